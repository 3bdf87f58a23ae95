"""End to end: the real `meltano run tap-amplitude target-posthog` against both stand-ins.

These are the promises a migrating user relies on: everything arrives once, a rerun sends
nothing, new hours send only themselves, and a killed run resumes with nothing lost.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.meltano_harness import (
    AMPLITUDE_KEY,
    AMPLITUDE_SECRET,
    JOB,
    MELTANO,
    POSTHOG_KEY,
    REPO_ROOT,
    MeltanoProject,
    base_environment,
    install_plugins,
    tap_settings,
    target_settings,
)
from tests.target_support import is_export_event
from tests.testbed.amplitude import AmplitudeStandIn
from tests.testbed.faults import Fault
from tests.testbed.generator import ExportSpec, ExportStore
from tests.testbed.posthog import PostHogStandIn

pytestmark = pytest.mark.e2e

START = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module", autouse=True)
def _plugins_installed() -> None:
    install_plugins()


@pytest.fixture
def store(tmp_path: Path) -> ExportStore:
    return ExportStore.build(tmp_path / "export", ExportSpec(start=START, hours=48, events=1500))


@pytest.fixture
def amplitude(store: ExportStore) -> Iterator[AmplitudeStandIn]:
    with AmplitudeStandIn(store, api_key=AMPLITUDE_KEY, secret_key=AMPLITUDE_SECRET) as server:
        yield server


@pytest.fixture
def posthog() -> Iterator[PostHogStandIn]:
    with PostHogStandIn(api_key=POSTHOG_KEY) as server:
        yield server


@pytest.fixture
def project(tmp_path: Path, amplitude: AmplitudeStandIn, posthog: PostHogStandIn) -> MeltanoProject:
    settings = tap_settings(amplitude.url, START, START + dt.timedelta(hours=48))
    settings |= target_settings(posthog.url, tmp_path / "out")
    settings |= {"TARGET_POSTHOG_BATCH_SIZE": "100", "TARGET_POSTHOG_MAX_RETRIES": "5"}
    # Set through Meltano as a user would (a `decimal` kind made Meltano itself fail).
    settings |= {
        "TAP_AMPLITUDE_RETRY_BASE_SECONDS": "0.5",
        "TARGET_POSTHOG_RETRY_BASE_SECONDS": "0.05",
    }
    return MeltanoProject(workdir=tmp_path, environment="prod", settings=settings)


def non_alias_uuids(posthog: PostHogStandIn) -> Counter[str]:
    return Counter(e["uuid"] for e in posthog.events if is_export_event(e))


def alias_pairs(posthog: PostHogStandIn) -> Counter[tuple[str, str]]:
    pairs: Counter[tuple[str, str]] = Counter()
    for event in posthog.aliases():
        props = event["properties"]
        anon = props.get("alias") or props.get("$anon_distinct_id")
        pairs[(anon, event["distinct_id"])] += 1
    return pairs


def expected_pairs(store: ExportStore) -> set[tuple[str, str]]:
    """(device, user) pairs a correct migration ties: a device goes to the first user it shows."""
    owner: dict[str, str] = {}
    for record in store.iter_events():
        device, user = record.get("device_id"), record.get("user_id")
        if device and user and device != user:
            owner.setdefault(device, user)
    return set(owner.items())


def window_of(record: dict, hours: int) -> int:
    """Index of the `hours`-wide window (counted from START) that holds the record."""
    uploaded = dt.datetime.fromisoformat(record["server_upload_time"]).replace(tzinfo=dt.UTC)
    return int((uploaded - START).total_seconds() // 3600) // hours


def assert_succeeded(result: object) -> None:
    assert getattr(result, "returncode", None) == 0, (
        f"meltano run failed:\n{getattr(result, 'stdout', '')}\n{getattr(result, 'stderr', '')}"
    )


def test_full_run_delivers_every_event_once_with_one_alias_per_pair(
    project: MeltanoProject, store: ExportStore, posthog: PostHogStandIn
) -> None:
    result = project.run_job()
    assert_succeeded(result)

    delivered = non_alias_uuids(posthog)
    assert set(delivered) == store.uuids()
    assert max(delivered.values()) == 1, "an event was sent twice"
    pairs = alias_pairs(posthog)
    assert all(count == 1 for count in pairs.values()), "an alias was sent twice"
    # Pair order may differ from our first-seen order across windows; every device is tied once.
    assert {device for device, _ in pairs} == {device for device, _ in expected_pairs(store)}
    assert all(request.historical_migration for request in posthog.requests)

    bookmark = project.stored_state()["singer_state"]["bookmarks"]["events"]
    assert bookmark["replication_key"] == "server_upload_time"
    assert bookmark["replication_key_value"] == (START + dt.timedelta(hours=48)).isoformat()


def test_rerun_sends_nothing_and_new_hours_send_only_themselves(
    project: MeltanoProject, store: ExportStore, posthog: PostHogStandIn
) -> None:
    assert_succeeded(project.run_job())
    first_run = non_alias_uuids(posthog)
    aliases_after_first = len(posthog.aliases())

    assert_succeeded(project.run_job())
    assert non_alias_uuids(posthog) == first_run, "a rerun with stored state sent events again"
    assert len(posthog.aliases()) == aliases_after_first

    # A day later: 24 more hours have arrived and finished loading.
    before_new = store.uuids()
    store.add(ExportSpec(start=START + dt.timedelta(hours=48), hours=24, events=600, seed=99))
    new_uuids = store.uuids() - before_new
    project.settings["TAP_AMPLITUDE_END_DATE"] = (START + dt.timedelta(hours=72)).isoformat()
    assert_succeeded(project.run_job())

    delivered = non_alias_uuids(posthog)
    assert set(delivered) == store.uuids()
    assert max(delivered.values()) == 1
    sent_in_third_run = set(delivered) - set(first_run)
    assert sent_in_third_run == new_uuids
    assert max(alias_pairs(posthog).values()) == 1, "an alias was sent again on a later run"


def test_killed_run_resumes_with_nothing_lost(
    project: MeltanoProject, store: ExportStore, posthog: PostHogStandIn
) -> None:
    # Slow PostHog down and read 4-hour windows, so the kill lands mid-migration after some
    # windows were confirmed and their STATE stored by Meltano.
    posthog.inject(Fault.delay(0.15), times=10_000)
    project.settings["TAP_AMPLITUDE_WINDOW_HOURS"] = "4"
    project.settings["TARGET_POSTHOG_CONCURRENCY"] = "2"
    total = len(store.uuids())
    killed = project.run_job_until(lambda: posthog.event_count >= total // 2)
    assert killed.returncode != 0
    bookmark_at_kill = project.stored_state()["singer_state"]["bookmarks"]["events"]
    assert START.isoformat() < bookmark_at_kill["replication_key_value"]
    delivered_before_kill = set(non_alias_uuids(posthog))
    assert 0 < len(delivered_before_kill) < total

    posthog.clear_faults()
    assert_succeeded(project.run_job(force=True))

    delivered = non_alias_uuids(posthog)
    assert set(delivered) == store.uuids(), "events were lost across the kill"
    # Only what was not yet covered by a stored STATE is sent again, not everything: at most
    # the batches in flight (stored by PostHog, answer not yet back), the partial batch, and the
    # part of the window being read that was already confirmed.
    resent = sum(count - 1 for count in delivered.values())
    largest_window = max(
        Counter(window_of(record, hours=4) for record in store.iter_events()).values()
    )
    in_flight = (2 + 1) * 100  # (concurrency + partial batch) x batch_size
    bound = in_flight + largest_window
    assert resent <= bound, "the resumed run started over instead of resuming"
    # Whatever was re-sent is the same PostHog event (same uuid, name, person and day),
    # which PostHog's ReplacingMergeTree collapses into one.
    unique = [e for e in posthog.unique_events() if is_export_event(e)]
    assert len(unique) == total


def test_a_job_paused_mid_run_goes_on_and_loses_nothing(
    project: MeltanoProject, store: ExportStore, posthog: PostHogStandIn
) -> None:
    """A laptop that sleeps during `meltano run`: Meltano, the tap and the target all stop, past
    both plugins' request timeouts, with downloads, relayed lines and batches in flight."""
    # More output than Meltano's buffer (1 MiB here, 100 MiB by default) and the pipes hold, and
    # a slower PostHog: the tap is blocked mid-write when the pause lands.
    store.add(ExportSpec(start=START, hours=48, events=5_000, seed=11))
    project.settings["MELTANO_ELT_BUFFER_SIZE"] = str(1 << 20)
    posthog.inject(Fault.delay(0.05), times=10_000)
    project.settings["TAP_AMPLITUDE_REQUEST_TIMEOUT"] = "1"
    project.settings["TARGET_POSTHOG_REQUEST_TIMEOUT"] = "1"
    total = len(store.uuids())
    paused = project.run_job_pausing(
        lambda: posthog.event_count >= total // 4, seconds=1.5, times=3
    )
    assert_succeeded(paused)
    assert set(non_alias_uuids(posthog)) == store.uuids()


def test_default_environment_runs_the_bundled_sample_without_an_account(tmp_path: Path) -> None:
    payloads = tmp_path / "payloads.jsonl"
    project = MeltanoProject(
        workdir=tmp_path,
        environment="dev",
        settings={
            "TARGET_POSTHOG_DRY_RUN_PATH": str(payloads),
            "TARGET_POSTHOG_ALIAS_REGISTRY": str(tmp_path / "aliases.sqlite"),
            "TARGET_POSTHOG_DEAD_LETTER_PATH": str(tmp_path / "dead-letter.jsonl"),
        },
    )
    assert_succeeded(project.run_job())

    sample = ExportStore.open(REPO_ROOT / "sample" / "amplitude-export")
    lines = payloads.read_bytes().splitlines()
    events = [event for line in lines for event in orjson.loads(line)["batch"]]
    sent = {e["uuid"] for e in events if is_export_event(e)}
    assert sent == sample.uuids()
    assert all(orjson.loads(line)["historical_migration"] is True for line in lines)

    # Run again: a dry run moves no bookmark, so the same payloads are written again, in place
    # of the first run's.
    assert_succeeded(project.run_job())
    assert payloads.read_bytes().splitlines() == lines


def sample_project(folder: Path) -> Path:
    """A Meltano project that is this repository's, with its own `.env`, outputs and system
    database: the repository's files are linked, its installed plugins shared."""
    folder.mkdir()
    (folder / "meltano.yml").write_bytes((REPO_ROOT / "meltano.yml").read_bytes())
    for name in ("sample", "singer-plugin-common", "tap-amplitude", "target-posthog", "scripts"):
        (folder / name).symlink_to(REPO_ROOT / name)
    (folder / ".meltano").mkdir()
    for kind in ("extractors", "loaders"):
        (folder / ".meltano" / kind).symlink_to(REPO_ROOT / ".meltano" / kind)
    return folder


def test_readme_sample_command_is_sealed_from_a_filled_env(tmp_path: Path) -> None:
    """README command 1 does what it says with the real migration's `.env` filled in and
    other settings exported in the shell; the plain `meltano run` would not (the control)."""
    project = sample_project(tmp_path / "project")
    real_key = "phc_real_project_key_do_not_leak"
    (project / ".env").write_text(
        "TAP_AMPLITUDE_START_DATE=2030-01-01T00:00:00Z\n"
        "TAP_AMPLITUDE_API_KEY=amp-real-key\n"
        f"TARGET_POSTHOG_API_KEY={real_key}\n"
        "TARGET_POSTHOG_HOST=http://127.0.0.1:9\n"
        "TARGET_POSTHOG_MAX_EVENTS_PER_MINUTE=60\n"
    )
    env = base_environment()
    env.update(
        MELTANO_DATABASE_URI=f"sqlite:///{tmp_path / 'meltano.db'}",
        MELTANO_ENVIRONMENT="prod",
        MELTANO_RUN_STATE_ID_SUFFIX="prod-range-1",
        TAP_AMPLITUDE_WINDOW_HOURS="1",
        TARGET_POSTHOG_DRY_RUN_PATH=str(tmp_path / "elsewhere.jsonl"),
    )
    payloads = project / "output" / "dev" / "posthog-payloads.jsonl"

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, cwd=project, env=env, capture_output=True, text=True, timeout=240
        )

    plain = run(str(MELTANO), "--environment=dev", "run", *JOB)
    # The control: the filled .env and the exported variables took over the plain command.
    assert "2030-01-01" in plain.stderr
    assert not payloads.exists()
    (tmp_path / "elsewhere.jsonl").unlink()  # the exported dry_run_path: replaced, but empty

    sealed = run(sys.executable, "-m", "scripts.sample_run")
    assert_succeeded(sealed)
    lines = payloads.read_bytes().splitlines()
    events = [event for line in lines for event in orjson.loads(line)["batch"]]
    sample = ExportStore.open(REPO_ROOT / "sample" / "amplitude-export")
    assert {e["uuid"] for e in events if is_export_event(e)} == sample.uuids()
    assert not (tmp_path / "elsewhere.jsonl").exists()
    first_line = sealed.stderr.splitlines()[0]
    set_aside = sorted(
        name for name in env if name.startswith(("TAP_AMPLITUDE_", "TARGET_POSTHOG_", "MELTANO_"))
    )
    assert "MELTANO_ENVIRONMENT" in set_aside and "TAP_AMPLITUDE_WINDOW_HOURS" in set_aside
    assert first_line == (
        "sample run: meltano run tap-amplitude target-posthog in the dev environment on the "
        f"bundled sample; .env ignored; variables set aside: {', '.join(set_aside)}"
    )
    assert real_key not in sealed.stdout + sealed.stderr + plain.stdout + plain.stderr


def test_tap_output_loads_into_a_standard_singer_target(
    tmp_path: Path, store: ExportStore, amplitude: AmplitudeStandIn
) -> None:
    destination = tmp_path / "jsonl"
    destination.mkdir()
    settings = tap_settings(amplitude.url, START, START + dt.timedelta(days=10))
    settings["TARGET_JSONL_DESTINATION_PATH"] = str(destination)
    project = MeltanoProject(workdir=tmp_path, environment="prod", settings=settings)
    result = project.run("run", "tap-amplitude", "target-jsonl", timeout=300)
    assert_succeeded(result)

    (output,) = destination.glob("events-*.jsonl")
    records = [orjson.loads(line) for line in output.read_bytes().splitlines()]
    assert {r["uuid"] for r in records} == store.uuids()
    source = {r["uuid"]: r for r in store.iter_events()}
    for record in records[:50]:
        raw = source[record["uuid"]]
        assert record["event_type"] == raw["event_type"]
        assert record["event_properties"] == raw["event_properties"]
        assert (
            record["server_upload_time"] == raw["server_upload_time"].replace(" ", "T") + "+00:00"
        )
