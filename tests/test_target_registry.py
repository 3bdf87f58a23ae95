"""The alias registry on SQLite and on a real PostgreSQL server: durable, one alias per device,
shared devices recorded, claims atomic across processes, migrations, secrets kept out."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import traceback
from pathlib import Path

import psycopg
import pytest
from target_posthog.profiles import Profiles
from target_posthog.registry import AliasRegistry, Claim, PendingAlias, RegistryError
from target_posthog.registry_schema import LATEST
from target_posthog.registry_store import hide_secrets, open_database, redact

from tests.postgres import PostgresServer

pytestmark = pytest.mark.timeout(120)

T0 = "2024-03-01T00:00:00.000000+00:00"
REPO = Path(__file__).resolve().parents[1]
OLD_REGISTRY = REPO / "tests" / "data" / "registry-v1.sqlite"  # made by the pre-migration code


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new registry location: a SQLite path, or a new PostgreSQL database's URL."""
    if request.param == "sqlite":
        return str(tmp_path / "sub" / "aliases.sqlite")
    return request.getfixturevalue("postgres_server").create_database()


def rows(location: str, sql: str) -> list[tuple]:
    database = open_database(location, read_only=True)
    try:
        return sorted(database.read(sql))
    finally:
        database.close()


# --- what a registry keeps, on both backends ----------------------------------------------


def test_a_pair_is_new_once_then_known_and_survives_a_restart(location: str) -> None:
    registry = AliasRegistry(location)
    assert registry.claim("d1", "u1", T0) is Claim.NEW
    assert registry.claim("d1", "u1", T0) is Claim.KNOWN  # in flight: never sent twice
    assert registry.claim("d2", "u1", T0) is Claim.NEW  # a user with two devices: two aliases
    registry.record_confirmed([PendingAlias("d1", "u1", T0)])
    assert registry.count() == 1
    registry.close()

    reopened = AliasRegistry(location)
    assert reopened.claim("d1", "u1", T0) is Claim.KNOWN
    # d2 was claimed but never confirmed (say the run crashed): its claim holder is gone,
    # so the next run takes the claim over and sends the alias.
    assert reopened.claim("d2", "u1", T0) is Claim.NEW
    assert reopened.claim("d2", "u9", T0) is Claim.SHARED_DEVICE  # the owner stays u1
    assert reopened.count() == 1
    reopened.close()
    assert rows(location, "SELECT device_id, user_id, confirmed_at IS NULL FROM aliases") == [
        ("d1", "u1", False),
        ("d2", "u1", True),
    ]


def test_shared_device_is_recorded_counted_once_and_not_aliased(location: str) -> None:
    registry = AliasRegistry(location)
    assert registry.claim("d1", "u1", T0) is Claim.NEW
    assert registry.claim("d1", "u2", T0) is Claim.SHARED_DEVICE
    assert registry.claim("d1", "u2", T0) is Claim.SHARED_DEVICE
    assert registry.shared_device_pairs == 1
    registry.close()
    assert rows(location, "SELECT device_id, user_id FROM shared_devices") == [("d1", "u2")]


def test_a_users_own_id_is_never_aliased_to_another_user(location: str) -> None:
    """User "abc" seen first: a device "abc" later used by u1 would, aliased, merge user abc's
    person into u1's. The id stays user abc's; the collision is recorded and counted."""
    registry = AliasRegistry(location)
    assert registry.user_distinct_id("abc", T0) == "abc"
    assert registry.claim("abc", "u1", T0) is Claim.USER_ID
    assert registry.claim("abc", "u1", T0) is Claim.USER_ID
    assert registry.user_distinct_id("abc", T0) == "abc"
    assert (registry.colliding_ids, registry.shared_device_pairs, registry.count()) == (1, 0, 0)
    parallel = AliasRegistry(location)  # another run on the same registry at the same time
    assert parallel.claim("abc", "u7", T0) is Claim.USER_ID
    assert parallel.claim("u7", "abc", T0) is Claim.NEW  # user abc's own devices are fine
    parallel.close()
    registry.close()
    reopened = AliasRegistry(location)  # a later run
    assert reopened.claim("abc", "u2", T0) is Claim.USER_ID
    assert reopened.owner_of("abc") == "abc"
    reopened.close()
    assert rows(location, "SELECT device_id, user_id FROM shared_devices") == [
        ("abc", "u1"),
        ("abc", "u2"),
        ("abc", "u7"),
    ]
    dry = AliasRegistry(location, read_only=True)
    assert dry.claim("abc", "u3", T0) is Claim.USER_ID
    dry.close()


def test_a_user_whose_id_is_another_users_device_gets_its_own_distinct_id(
    location: str,
) -> None:
    """Device "abc" tied to u1 first: distinct_id "abc" is u1's person in PostHog, so user
    "abc"'s events go to "amplitude_user:abc", in this run and every later one."""
    registry = AliasRegistry(location)
    assert registry.user_distinct_id("u1", T0) == "u1"
    assert registry.claim("abc", "u1", T0) is Claim.NEW
    registry.record_confirmed([PendingAlias("abc", "u1", T0)])
    assert registry.user_distinct_id("abc", T0) == "amplitude_user:abc"
    assert registry.colliding_ids == 1
    assert registry.claim("dev-9", "amplitude_user:abc", T0) is Claim.NEW  # its own devices
    assert registry.count() == 1
    registry.close()
    for read_only in (False, True):
        reopened = AliasRegistry(location, read_only=read_only)
        assert reopened.user_distinct_id("abc", T0) == "amplitude_user:abc"
        assert reopened.user_distinct_id("u1", T0) == "u1"
        assert reopened.user_distinct_id("new-user", T0) == "new-user"
        reopened.close()
    assert ("abc", "abc") in rows(location, "SELECT device_id, user_id FROM shared_devices")
    dry = AliasRegistry(location, read_only=True)  # a dry run decides alike, in memory
    assert dry.claim("xyz", "u1", T0) is Claim.NEW
    assert dry.user_distinct_id("xyz", T0) == "amplitude_user:xyz"
    assert dry.user_distinct_id("qrs", T0) == "qrs"
    assert dry.claim("qrs", "u1", T0) is Claim.USER_ID
    dry.close()


def test_a_batch_of_aliases_is_stored_whole_or_not_at_all(location: str) -> None:
    registry = AliasRegistry(location)
    broken = PendingAlias("d3", "u3", object())  # type: ignore[arg-type]  # fails mid-batch
    with pytest.raises(RegistryError, match="could not be written"):
        registry.record_confirmed(
            [PendingAlias("d1", "u1", T0), PendingAlias("d2", "u2", T0), broken]
        )
    assert registry.count() == 0  # the first two were not kept either
    registry.record_confirmed([PendingAlias("d1", "u1", T0)])
    assert registry.count() == 1
    registry.close()


def test_read_only_registry_never_writes(location: str) -> None:
    dry = AliasRegistry(location, read_only=True)  # nothing there yet: reads as empty
    assert dry.claim("d1", "u1", T0) is Claim.NEW
    dry.record_confirmed([PendingAlias("d1", "u1", T0)])
    assert dry.claim("d1", "u1", T0) is Claim.KNOWN
    dry.close()

    real = AliasRegistry(location)
    real.record_confirmed([PendingAlias("d9", "u9", T0)])
    real.close()
    before = rows(location, "SELECT * FROM aliases")
    dry = AliasRegistry(location, read_only=True)
    assert dry.claim("d9", "u9", T0) is Claim.KNOWN  # reads what real runs recorded
    assert dry.claim("d9", "u8", T0) is Claim.SHARED_DEVICE
    assert dry.claim("d7", "u7", T0) is Claim.NEW
    dry.close()
    assert rows(location, "SELECT * FROM aliases") == before
    assert rows(location, "SELECT * FROM shared_devices") == []


def test_reopening_applies_no_migration_twice(location: str) -> None:
    AliasRegistry(location).close()
    AliasRegistry(location).close()
    versions = rows(location, "SELECT version FROM schema_migrations")
    assert versions == [(v,) for v in range(1, LATEST + 1)]


# --- claims across processes ---------------------------------------------------------------

# Claims every pair of a list (device, user) in a given order, then prints each decision.
_CLAIMER = """
import json, sys
from target_posthog.profiles import Profiles
from target_posthog.registry import AliasRegistry, PendingAlias
registry = AliasRegistry(sys.argv[1])
pairs = json.loads(sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()  # all processes start claiming together
decisions = [registry.claim(d, u, "2024-03-01T00:00:00Z").value for d, u in pairs]
if sys.argv[3] == "confirm":
    registry.record_confirmed(
        [PendingAlias(d, u, "2024-03-01T00:00:00Z")
         for (d, u), c in zip(pairs, decisions) if c == "new"])
print(json.dumps(decisions), flush=True)
if sys.argv[3] == "hold":
    sys.stdin.readline()  # alive, holding its claims, until told
registry.close()
"""


def start_claimer(location: str, pairs: list[tuple[str, str]], mode: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", _CLAIMER, location, json.dumps(pairs), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n", process.stderr.read() if process.stderr else ""
    return process


def go(process: subprocess.Popen) -> None:
    assert process.stdin is not None
    process.stdin.write("\n")
    process.stdin.flush()


def decisions_of(process: subprocess.Popen) -> list[str]:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, process.stderr.read() if process.stderr else ""
    return json.loads(line)


def test_four_processes_claiming_at_once_agree_on_every_owner(location: str) -> None:
    """Four runs see the same 300 devices, each device with a different user in each run,
    in different orders: each device is NEW in exactly one run, and every run's view of who
    owns it (KNOWN for the owner, SHARED_DEVICE for the others) is that run's claim."""
    devices = [f"device-{n}" for n in range(300)]
    plans = []
    for run in range(4):
        order = devices[run::4] + [d for d in devices if devices.index(d) % 4 != run]
        plans.append([(device, f"user-{run}") for device in order])
    processes = [start_claimer(location, plan, "confirm") for plan in plans]
    for process in processes:
        go(process)
    results = [
        dict(zip(plan, decisions_of(p), strict=True))
        for plan, p in zip(plans, processes, strict=True)
    ]
    for process in processes:
        assert process.wait(timeout=60) == 0
    owners = dict(rows(location, "SELECT device_id, user_id FROM aliases"))
    assert len(owners) == 300
    for device in devices:
        winners = [run for run in range(4) if results[run][(device, f"user-{run}")] == "new"]
        assert len(winners) == 1, (device, winners)
        assert owners[device] == f"user-{winners[0]}"
        for run in range(4):
            if run != winners[0]:
                assert results[run][(device, f"user-{run}")] == "shared_device"
    shared = rows(location, "SELECT device_id, user_id FROM shared_devices")
    assert len(shared) == 300 * 3  # every losing (device, user) pair, once
    assert rows(location, "SELECT count(*) FROM aliases WHERE confirmed_at IS NULL") == [(0,)]


def test_the_same_pair_in_two_processes_is_aliased_by_one_only(location: str) -> None:
    """Two runs (overlapping ranges) meet the same 200 pairs: one run sends each alias."""
    pairs = [(f"device-{n}", f"user-{n}") for n in range(200)]
    processes = [start_claimer(location, order, "hold") for order in (pairs, pairs[::-1])]
    for process in processes:
        go(process)
    first, second = (decisions_of(p) for p in processes)
    second = second[::-1]
    for mine, theirs in zip(first, second, strict=True):
        assert sorted([mine, theirs]) == ["known", "new"]
    for process in processes:
        go(process)
        assert process.wait(timeout=60) == 0


def test_a_killed_runs_claims_are_taken_over_a_live_runs_are_not(location: str) -> None:
    pairs = [("device-a", "user-a"), ("device-b", "user-b")]
    holder = start_claimer(location, pairs, "hold")
    go(holder)
    assert decisions_of(holder) == ["new", "new"]  # claimed, never confirmed
    other = AliasRegistry(location)
    assert other.claim("device-a", "user-a", T0) is Claim.KNOWN  # its holder is alive
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    rerun = AliasRegistry(location)  # the killed job's rerun meets the same pair
    assert rerun.claim("device-b", "user-b", T0) is Claim.NEW
    assert rerun.claim("device-b", "user-b", T0) is Claim.KNOWN
    assert rerun.claim("device-b", "user-x", T0) is Claim.SHARED_DEVICE
    rerun.close()
    other.close()


# --- SQLite only: the file ------------------------------------------------------------------


def test_registry_file_is_user_only_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "aliases.sqlite"
    registry = AliasRegistry(path)
    registry.record_confirmed([PendingAlias("d1", "u1", T0)])
    for file in path.parent.iterdir():  # the db and SQLite's -wal/-shm files
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    registry.close()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_registry_locked_by_another_process_fails_clearly(tmp_path: Path) -> None:
    path = tmp_path / "aliases.sqlite"
    registry = AliasRegistry(path)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        registry.database._connection.execute("PRAGMA busy_timeout=50")  # type: ignore[attr-defined]
        with pytest.raises(RegistryError, match=r"could not be written.*another process holds"):
            registry.record_confirmed([PendingAlias("d1", "u1", T0)])
    finally:
        other.execute("ROLLBACK")
        other.close()
    registry.record_confirmed([PendingAlias("d1", "u1", T0)])  # lock gone: works, not corrupt
    assert registry.count() == 1
    registry.close()


def test_a_registry_from_before_migrations_keeps_working(tmp_path: Path) -> None:
    """tests/data/registry-v1.sqlite was written by the registry code of before this schema
    had versions (3 aliases confirmed, device-a also seen with user-9, device-d in flight)."""
    path = tmp_path / "old.sqlite"
    shutil.copyfile(OLD_REGISTRY, path)
    dry = AliasRegistry(path, read_only=True)  # a dry run reads it as it is, unchanged
    assert dry.count() == 3 and dry.claim("device-a", "user-1", T0) is Claim.KNOWN
    dry.close()
    assert path.read_bytes() == OLD_REGISTRY.read_bytes()

    registry = AliasRegistry(path)
    assert registry.count() == 3
    assert registry.claim("device-a", "user-1", T0) is Claim.KNOWN
    assert registry.claim("device-c", "user-1", T0) is Claim.KNOWN
    assert registry.claim("device-a", "user-9", T0) is Claim.SHARED_DEVICE
    assert registry.claim("device-b", "user-1", T0) is Claim.SHARED_DEVICE  # owner stays user-2
    assert registry.claim("device-d", "user-4", T0) is Claim.NEW  # never confirmed back then
    registry.record_confirmed([PendingAlias("device-d", "user-4", T0)])
    registry.close()
    assert rows(str(path), "SELECT device_id, user_id FROM aliases") == [
        ("device-a", "user-1"), ("device-b", "user-2"), ("device-c", "user-1"),
        ("device-d", "user-4"),
    ]  # fmt: skip
    assert rows(str(path), "SELECT device_id, user_id FROM shared_devices") == [
        ("device-a", "user-9"), ("device-b", "user-1"),
    ]  # fmt: skip
    assert rows(str(path), "SELECT version FROM schema_migrations") == [
        (v,) for v in range(1, LATEST + 1)
    ]


def test_a_registry_from_a_newer_target_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "aliases.sqlite"
    AliasRegistry(path).close()
    with sqlite3.connect(path) as connection:
        connection.execute("INSERT INTO schema_migrations VALUES (?, 'future', '')", (LATEST + 1,))
    with pytest.raises(RegistryError, match=rf"schema version {LATEST + 1}.*newer target-posthog"):
        AliasRegistry(path)


# --- PostgreSQL only: the URL, its password, concurrent start-ups -------------------------


def test_the_url_password_never_appears_in_errors_or_reprs(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database()
    registry = AliasRegistry(url)
    assert postgres_server.password not in repr(registry) + registry.location
    assert registry.location == url.replace(postgres_server.password, "***")
    registry.close()
    wrong = url.replace(postgres_server.password, postgres_server.password + "-wrong")
    with pytest.raises(RegistryError) as refused:
        AliasRegistry(wrong)
    assert "check the user name and password" in str(refused.value)
    assert postgres_server.password not in str(refused.value)
    shown = "".join(traceback.format_exception(refused.value))  # as a traceback would print
    assert "check the user name and password" in shown
    assert postgres_server.password not in shown
    unreachable = url.replace(f":{postgres_server.port}/", ":9/")
    with pytest.raises(RegistryError, match="running and reachable") as down:
        AliasRegistry(unreachable)
    assert postgres_server.password not in str(down.value)


def test_redact_hides_passwords_in_every_place_a_url_carries_one() -> None:
    assert redact("postgresql://u:s3cr%40t@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("postgres://u@h/db?password=s3cret&sslmode=require") == (
        "postgres://u@h/db?password=***&sslmode=require"
    )
    assert redact("output/aliases.sqlite") == "output/aliases.sqlite"


def test_a_short_password_is_hidden_without_mangling_the_message() -> None:
    message = 'password authentication failed for user "mig" (password "a" given)'
    assert hide_secrets(message, ["a"]) == (
        'password authentication failed for user "mig" (password "***" given)'
    )
    assert hide_secrets("at 10.0.0.1: pg refused pg-user", ["pg"]) == (
        "at 10.0.0.1: *** refused ***-user"
    )


def test_a_wrong_short_password_reads_as_what_postgresql_said(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.create_database()
    wrong = url.replace(postgres_server.password, "a")
    with pytest.raises(RegistryError) as caught:
        AliasRegistry(wrong)
    message = str(caught.value)
    assert 'password authentication failed for user "postgres"' in message
    assert message.endswith("check the user name and password")
    assert "postgresql://postgres:***@127.0.0.1" in message


def test_an_upper_case_url_scheme_is_a_postgresql_url(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database()
    upper = "POSTGRESQL" + url.removeprefix("postgresql")
    registry = AliasRegistry(upper)
    registry.close()
    assert rows(url, "SELECT max(version) FROM schema_migrations") == [(LATEST,)]


def test_processes_starting_at_once_on_a_new_database_migrate_it_once(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.create_database()
    script = "import sys; from target_posthog.registry import AliasRegistry as R; "
    script += "R(sys.argv[1]).close()"
    processes = [subprocess.Popen([sys.executable, "-c", script, url]) for _ in range(4)]
    assert [p.wait(timeout=60) for p in processes] == [0, 0, 0, 0]
    assert rows(url, "SELECT version FROM schema_migrations") == [
        (v,) for v in range(1, LATEST + 1)
    ]
    with psycopg.connect(url) as connection:
        tables = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    assert sorted(t for (t,) in tables) == [
        "aliases", "ledger_dead_letters", "ledger_hours", "ledger_moved", "ledger_reads",
        "ledger_refused", "profiles", "rate_slots", "registry_meta", "runs", "schema_migrations",
        "shared_devices", "user_ids",
    ]  # fmt: skip


def test_person_properties_are_kept_in_a_postgresql_registry(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.create_database()
    order = "2024-04-01T00:00:00.000000+00:00" + "0" * 36
    profiles = Profiles(url)
    profiles.observe_person("u", order, {"plan": "pro"}, None)
    [(update, pending)] = list(profiles.updates(lambda device: None))
    assert update["properties"]["$set"] == {"plan": "pro"}
    profiles.record_sent([pending])
    profiles.close()
    again = Profiles(url)  # a later run: the same observation changes nothing
    again.observe_person("u", order, {"plan": "pro"}, None)
    assert list(again.updates(lambda device: None)) == []
    again.close()


@pytest.mark.parametrize(
    "location",
    [
        "postgresql+psycopg://mig:S3cretXY42@127.0.0.1:1/reg1",  # SQLAlchemy's form
        "host=127.0.0.1 port=5432 dbname=reg user=mig password=S3cretXY42",  # libpq key=value
        "mysql://mig:S3cretXY42@127.0.0.1/reg",
    ],
)
def test_a_location_that_is_no_path_and_no_postgresql_url_is_refused_without_a_file(
    location: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taken for a SQLite path, it would hold the password in a file name and log line."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RegistryError) as caught:
        AliasRegistry(location)
    message = str(caught.value)
    assert "S3cretXY42" not in message and "S3cretXY42" not in redact(location)
    assert "neither a SQLite file path nor a postgresql:// URL" in message
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_a_url_with_an_unencoded_password_is_refused_without_quoting_it(tmp_path: Path) -> None:
    """psycopg quotes the part of a URL it cannot parse: that part may be the password."""
    location = "postgresql://mig:p@ss:w/rd%41#x?z@127.0.0.1:1/reg2"
    with pytest.raises(RegistryError) as caught:
        AliasRegistry(location)
    message = str(caught.value)
    for piece in ("ss:w/rd", "x?z", "%41#"):
        assert piece not in message
    assert "the URL cannot be parsed" in message and "percent-encoded" in message
