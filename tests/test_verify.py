"""`target-posthog-verify`: real migrations (tap | target) into the stand-ins, then the real CLI.

Each test migrates an export through the drill pipeline, changes what one side holds the way a
real failure would, and checks the report a user reads: the periods named, the counts, the
explanation, the exit code, and that a refusal or a limit is one clear line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from target_posthog.profiles import UPDATE_MARKER

from tests.pipeline_harness import DRILL_START, build_drill_store
from tests.test_reliability_kills import KillPoint, start_killed_run
from tests.testbed.dashboard import NOT_IN_CHARTS
from tests.testbed.faults import Fault
from tests.verify_harness import HOURS, Migration, chart_days, event_hours


@pytest.fixture
def migration(tmp_path: Path) -> Iterator[Migration]:
    store = build_drill_store(tmp_path / "export")
    migration = Migration(tmp_path, store)
    yield migration
    migration.stop()


def test_a_complete_migration_verifies_clean(migrated: Migration) -> None:
    report = migrated.verify()
    assert report.returncode == 0, report.stdout + report.stderr
    assert report.not_ok() == {}
    days = chart_days(migrated.store)  # from start_date on: earlier days are outside
    first = f"{DRILL_START:%Y-%m-%d}"
    assert {row["period"]: int(row["amplitude"]) for row in report.periods()} == {
        day: n for day, n in days.items() if day >= first
    }
    for row in report.rows:  # PostHog holds what was delivered, events plus aliases
        assert row["posthog"] == row["delivered"]
    history = [  # the person/group updates a run sends at its end are not export events
        e for e in migrated.posthog.unique_events() if UPDATE_MARKER not in e["properties"]
    ]
    assert sum(int(row["delivered"]) for row in report.rows) == len(history)
    # Person and group property rows: read and delivered, not counted by Amplitude's charts.
    updates = sum(r.get("event_type") in NOT_IN_CHARTS for r in migrated.store.iter_events())
    assert sum(int(row["person_group_updates"]) for row in report.rows) == updates > 0
    assert "OK" in report.stdout and "written to" in report.stderr
    assert "seem to count in" not in report.stderr  # no time-zone hint when all is well

    as_json = migrated.verify(output="report.json")
    assert as_json.rows == report.rows and as_json.stdout == report.stdout
    assert isinstance(orjson.loads((migrated.workdir / "report.json").read_bytes())[0]["read"], int)

    hourly = migrated.verify("--period", "hour")
    assert hourly.returncode == 0, hourly.stdout + hourly.stderr
    assert len(hourly.rows) == HOURS + 1 or len(hourly.rows) >= HOURS  # event times spill over
    assert hourly.not_ok() == {}


def test_events_lost_by_posthog_are_named_by_period_and_count(migration: Migration) -> None:
    migration.run()
    lost_hours = ("2024-05-01T03", "2024-05-01T17")
    events = migration.posthog.events
    doomed = [
        e for e in events if e["timestamp"][:13] in lost_hours and e["event"] != "$create_alias"
    ]
    doomed = doomed[::3]
    doomed_uuids = {e["uuid"] for e in doomed}
    removed = migration.posthog.remove_events(lambda e: e.get("uuid") in doomed_uuids)
    assert removed >= len(doomed) > 0
    lost = event_hours(doomed)

    report = migration.verify("--period", "hour", "--settle-hours", "0")
    assert report.returncode == 1
    assert report.not_ok() == {hour: f"missing in PostHog ({n})" for hour, n in lost.items()}
    for hour, n in lost.items():
        row = report.row(hour)
        assert int(row["delivered"]) - int(row["posthog"]) == n

    daily = migration.verify("--settle-hours", "0")
    assert daily.returncode == 1
    assert daily.not_ok() == {"2024-05-01": f"missing in PostHog ({sum(lost.values())})"}

    # Delivered within the settle time: not an alarm yet, and the report says until when.
    recent = migration.verify()
    assert recent.returncode == 0
    status = recent.not_ok()["2024-05-01"]
    assert status.startswith(f"not visible yet ({sum(lost.values())}), delivered at 20")
    assert "verify again after" in status


def test_an_unwritable_output_is_one_line_before_any_query(
    migrated: Migration, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("kept")
    cases = {
        tmp_path: "Is a directory",
        blocker / "report.csv": f"{blocker} is a file, not a folder",
    }
    for output, cause in cases.items():
        asked = len(migrated.amplitude.dashboard.requests), len(migrated.posthog.query_api.requests)
        report = migrated.verify("--output", str(output))
        assert report.returncode == 2
        assert report.stderr.splitlines() == [
            f"target-posthog-verify: cannot verify: the report cannot be written to {output} "
            f"({cause}); choose --output"
        ]
        assert report.stdout == ""
        after = len(migrated.amplitude.dashboard.requests), len(migrated.posthog.query_api.requests)
        assert after == asked  # no query spent on a run that cannot write its report
    assert blocker.read_text() == "kept"
    # An existing report is written over; a new one is not left behind empty by the check.
    fine = tmp_path / "new" / "report.csv"
    assert migrated.verify("--output", str(fine)).returncode == 0 and fine.read_text()


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {"personal_api_key": "phx_wrong"},
            "PostHog refused the personal API key (401)",
        ),
        ({"project_id": "999"}, "PostHog has no project 999 that this key can read"),
        ({"amplitude_secret_key": "wrong"}, "Amplitude refused the API key or secret key (401)"),
        ({"amplitude_time_zone": "Mars/Olympus"}, "'Mars/Olympus' is not a time zone name"),
        (  # empty in .env: the variable a user sets, not the target's own name for it
            {"amplitude_api_key": ""},
            "the verification needs these target-posthog settings: amplitude_api_key "
            "(TAP_AMPLITUDE_API_KEY)",
        ),
        (  # only spaces: it got past, and the redaction of a "secret" of spaces garbled it
            {"personal_api_key": " "},
            "the verification needs these target-posthog settings: personal_api_key "
            "(TARGET_POSTHOG_PERSONAL_API_KEY)",
        ),
        (  # was a requests traceback
            {"app_host": "not a url"},
            "cannot verify: a URL in the settings is not usable",
        ),
        ({"app_host": "ftp://x"}, "cannot verify: a URL in the settings is not usable"),
        (  # the numbers the queries use: were tracebacks (int('x'), requests' timeout 0)
            {"max_retries": "x"},
            "cannot verify: max_retries (TARGET_POSTHOG_MAX_RETRIES) 'x' is not a whole number "
            "of at least 0",
        ),
        (
            {"request_timeout": 0},
            "cannot verify: request_timeout (TARGET_POSTHOG_REQUEST_TIMEOUT) 0 is not a number "
            "above 0",
        ),
    ],
)
def test_wrong_keys_or_project_give_one_clear_line(
    migrated: Migration, settings: dict[str, str], expected: str
) -> None:
    report = migrated.verify(**settings)
    assert report.returncode == 2
    assert len(report.error_lines()) == 1, report.stderr
    assert expected in report.error_lines()[0]
    assert "Traceback" not in report.stderr and report.rows == []


def test_a_429_storm_backs_off_then_stops_with_one_clear_line(migrated: Migration) -> None:
    migrated.posthog.query_api.faults.inject(Fault.status(429, retry_after=0.05), times=100)
    before = len(migrated.posthog.query_api.requests)
    report = migrated.verify(max_retries=3)
    assert report.returncode == 2
    assert len(migrated.posthog.query_api.requests) - before == 4  # first try and 3 retries
    counting, *waits, last = report.stderr.splitlines()
    assert counting.startswith("target-posthog-verify: counting 2024-")
    # One line per wait, as it starts (it was minutes of silence in a real storm).
    assert [_without_seconds(line) for line in waits] == [
        "target-posthog-verify: PostHog's query API answered 429 (injected status 429): "
        f"waiting S s, then attempt {attempt} of 4"
        for attempt in (2, 3, 4)
    ]
    assert last == (
        "target-posthog-verify: cannot verify: PostHog's query API is rate limiting this key "
        "(429: injected status 429; 3 retries with backoff). HogQL allows about 120 queries an "
        "hour per key: run the verification again later"
    )
    # A storm that ends: its waits said, the summary counts them.
    migrated.posthog.query_api.faults.clear()
    migrated.posthog.query_api.faults.inject(Fault.status(429, retry_after=0.05), times=2)
    passed = migrated.verify(max_retries=3)
    assert passed.returncode == 0, passed.stderr
    lines = passed.stderr.splitlines()
    assert len(lines) == 5 and lines[3].endswith("PostHog queries; 2 retried (429, 5xx, timeouts)")
    assert [_without_seconds(line) for line in lines[1:3]] == [
        "target-posthog-verify: PostHog's query API answered 429 (injected status 429): "
        f"waiting S s, then attempt {attempt} of 4"
        for attempt in (2, 3)
    ]

    # A budget spent for the hour: Retry-After says an hour, so it stops at once and says so.
    migrated.posthog.query_api.faults.clear()
    migrated.posthog.query_api.queries_per_hour = 0
    spent = migrated.verify()
    assert spent.returncode == 2
    [line] = spent.error_lines()
    assert "PostHog's query API is rate limiting this key (429: Request was throttled" in line
    asked = re.search(r"it asks to wait (\d+) s", line)  # the hour's oldest query ages out
    assert asked and int(asked[1]) > 300  # too long to wait: stops at once

    migrated.amplitude.dashboard.queries_per_hour = 0
    before = len(migrated.amplitude.dashboard.requests)
    amplitude = migrated.verify(max_retries=2)
    assert amplitude.returncode == 2
    waits = [_without_seconds(line) for line in amplitude.stderr.splitlines()[1:-1]]
    assert waits == [
        "target-posthog-verify: Amplitude's Dashboard REST API answered 429 (Exceeded rate "
        f"limit: the project's hourly query cost budget): waiting S s, then attempt {n} of 3"
        for n in (2, 3)
    ]
    [line] = amplitude.error_lines()
    assert line.startswith(
        "target-posthog-verify: cannot verify: Amplitude's Dashboard REST API is rate limiting "
        "this project (429: Exceeded rate limit"
    )
    assert len(migrated.amplitude.dashboard.requests) - before == 3


@pytest.mark.parametrize(
    "point",
    [
        KillPoint("target", "state", 3),  # after a STATE: the next run starts past it
        KillPoint("target", "batch_stored", 9),  # delivered, STATE not out: read again
        KillPoint("tap", "records", 700),  # mid-window: the window is read again
    ],
    ids=lambda point: point.id,
)
def test_a_killed_and_resumed_migration_counts_every_record_once(
    migration: Migration, point: KillPoint
) -> None:
    killed, switch = start_killed_run(
        point, migration.pipeline, migration.amplitude, migration.posthog, migration.store
    )
    assert switch.fired.is_set() and not killed.ok
    migration.state = killed.last_state
    migration.run()
    report = migration.verify("--period", "hour", "--settle-hours", "0")
    assert report.returncode == 0, report.stdout + report.stderr
    assert report.not_ok() == {}
    read = sum(int(row["read"]) for row in report.rows)
    assert read == migration.store.event_count  # no record counted twice, none left out


def test_the_settings_come_from_the_environment_meltano_gives_never_a_dotenv_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`meltano --env-file .env.rehearsal invoke target-posthog:verify` must verify the
    rehearsal, not the project that the real `.env` names."""
    from singer_sdk.configuration import _dict_config
    from target_posthog.verify_cli import load_config

    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "TARGET_POSTHOG_PROJECT_ID=777\nTARGET_POSTHOG_AMPLITUDE_TIME_ZONE=America/Los_Angeles\n"
    )
    monkeypatch.setattr(_dict_config, "find_dotenv", lambda: str(dotenv))  # as if found
    monkeypatch.setenv("TARGET_POSTHOG_PROJECT_ID", "778")
    monkeypatch.delenv("TARGET_POSTHOG_AMPLITUDE_TIME_ZONE", raising=False)
    for name, value in {
        "API_KEY": "phc_x", "PERSONAL_API_KEY": "phx_x", "AMPLITUDE_API_KEY": "a",
        "AMPLITUDE_SECRET_KEY": "s", "ALIAS_REGISTRY": str(tmp_path / "r.sqlite"),
    }.items():  # fmt: skip
        monkeypatch.setenv(f"TARGET_POSTHOG_{name}", value)
    config = load_config(("ENV",))
    assert str(config["project_id"]) == "778"
    assert config.get("amplitude_time_zone") != "America/Los_Angeles"


def test_a_non_utc_amplitude_project_lines_up_hour_by_hour(migrated: Migration) -> None:
    migrated.amplitude.dashboard.time_zone = "America/Los_Angeles"
    report = migrated.verify("--period", "hour", amplitude_time_zone="America/Los_Angeles")
    assert report.returncode == 0, report.stdout + report.stderr
    assert report.not_ok() == {}
    # Amplitude's buckets are Pacific wall time; unmoved, every hour would be off by 7.
    shifted = migrated.verify("--period", "hour", amplitude_time_zone="UTC")
    assert shifted.returncode == 1
    assert any("unexplained" in status for status in shifted.not_ok().values())
    # The user is told why, by hour and by day (one more query, for three days of hours).
    hint = (
        "target-posthog-verify: Amplitude's hourly counts match the migration's once moved 7 h "
        "later: amplitude_time_zone is UTC, but the project's charts seem to count in "
        "UTC-07:00 around 2024-"
    )
    assert hint in shifted.stderr
    daily = migrated.verify(amplitude_time_zone="UTC")
    assert daily.returncode == 1 and hint in daily.stderr
    assert "seem to count in" not in report.stderr


def test_a_zone_with_half_hour_offsets_is_refused_in_one_line(migrated: Migration) -> None:
    migrated.amplitude.dashboard.time_zone = "Asia/Kolkata"
    asked = len(migrated.amplitude.dashboard.requests)
    report = migrated.verify(amplitude_time_zone="Asia/Kolkata")
    assert report.returncode == 2
    assert len(migrated.amplitude.dashboard.requests) == asked  # refused before any query
    [line] = report.error_lines()
    assert re.fullmatch(
        "target-posthog-verify: cannot verify: the Amplitude project's time zone Asia/Kolkata "
        r"is UTC\+05:30 on 2024-05-01: its hourly buckets do not line up with UTC hours, so "
        "they cannot be compared hour by hour with the migration",
        line,
    )
    assert "Traceback" not in report.stderr


def _without_seconds(line: str) -> str:
    """A wait line with its seconds as S: the backoff has jitter."""
    return re.sub(r"waiting \d+\.\d s", "waiting S s", line)
