"""`target-posthog-verify`: real migrations (tap | target) into the stand-ins, then the real CLI.

Each test migrates an export through the drill pipeline, changes what one side holds the way a
real failure would, and checks the report a user reads: the periods named, the counts, the
explanation, the exit code, and that a refusal or a limit is one clear line.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
import pytest
from click.testing import CliRunner
from target_posthog import verify_cli
from target_posthog.client import RetryPolicy
from target_posthog.counts import AmplitudeCounts
from target_posthog.ledger_view import read_ledger
from target_posthog.profiles import UPDATE_MARKER

from tests.pipeline_harness import (
    AMPLITUDE_KEY,
    AMPLITUDE_SECRET,
    DRILL_START,
    POSTHOG_KEY,
    Pipeline,
    build_drill_store,
    drill_tap_config,
    drill_target_config,
)
from tests.target_support import run_target, target_config
from tests.test_reliability_kills import KillPoint, start_killed_run
from tests.testbed.amplitude import AmplitudeStandIn
from tests.testbed.dashboard import NOT_IN_CHARTS
from tests.testbed.events import ExportSpec
from tests.testbed.faults import Fault
from tests.testbed.posthog import PostHogStandIn
from tests.testbed.store import ExportStore

VERIFY = Path(sys.executable).parent / "target-posthog-verify"
PERSONAL_KEY = "phx_verify_secret_77c1e0_never_print"
PROJECT_ID = 31337
HOURS = 24


@dataclass
class Report:
    returncode: int
    stdout: str
    stderr: str
    rows: list[dict[str, str]]

    def row(self, period: str) -> dict[str, str]:
        return next(row for row in self.rows if row["period"] == period)

    def not_ok(self) -> dict[str, str]:
        return {row["period"]: row["status"] for row in self.rows if row["status"] != "OK"}

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if "cannot verify" in line]


class Migration:
    """One export, both stand-ins, the pipeline that moves it, and the verification."""

    def __init__(self, workdir: Path, store: ExportStore, hours: int = HOURS) -> None:
        self.workdir = workdir
        self.store = store
        self.amplitude = AmplitudeStandIn(store, AMPLITUDE_KEY, AMPLITUDE_SECRET).start()
        self.posthog = PostHogStandIn(
            api_key=POSTHOG_KEY, personal_api_key=PERSONAL_KEY, project_id=PROJECT_ID
        ).start()
        self.pipeline = Pipeline(
            workdir / "run",
            drill_tap_config(self.amplitude, hours),
            drill_target_config(workdir / "run", self.posthog),
        )
        self.state: dict[str, Any] | None = None

    def run(self, **tap_overrides: Any) -> None:
        self.pipeline.tap_config.update(tap_overrides)
        result = self.pipeline.run(self.state)
        assert result.ok, result.describe()
        self.state = result.last_state

    def verify(
        self,
        *args: str,
        cwd: Path | None = None,
        output: str = "report.csv",
        now: datetime | None = None,
        **settings: Any,
    ) -> Report:
        """The CLI as a user runs it; with `now`, in this process, judging at that time."""
        config = {
            **self.pipeline.target_config,
            # As Meltano passes them (meltano.yml: $TAP_AMPLITUDE_START_DATE, _END_DATE).
            "amplitude_start_date": self.pipeline.tap_config.get("start_date"),
            "amplitude_end_date": self.pipeline.tap_config.get("end_date"),
            "personal_api_key": PERSONAL_KEY,
            "project_id": str(PROJECT_ID),
            "app_host": self.posthog.url,
            "amplitude_api_key": AMPLITUDE_KEY,
            "amplitude_secret_key": AMPLITUDE_SECRET,
            "amplitude_api_url": self.amplitude.url,
            **settings,
        }
        path = self.workdir / "verify-config.json"
        path.write_bytes(orjson.dumps(config))
        written = self.workdir / output
        written.unlink(missing_ok=True)
        arguments = ["--config", str(path), "--output", str(written), *args]
        if now is None:
            done = subprocess.run(
                [str(VERIFY), *arguments], capture_output=True, text=True, timeout=120, cwd=cwd
            )
        else:
            with mock.patch.object(verify_cli, "utc_now", lambda: now):
                result = CliRunner().invoke(verify_cli.cli, arguments)
            assert not isinstance(result.exception, AssertionError | TypeError), result.exception
            done = subprocess.CompletedProcess([], result.exit_code, result.stdout, result.stderr)
        rows: list[dict[str, str]] = []
        if written.suffix == ".json" and written.exists():  # the same table, values typed
            table = orjson.loads(written.read_bytes())
            rows = [{k: "" if v is None else str(v) for k, v in row.items()} for row in table]
        elif written.exists():
            rows = list(csv.DictReader(written.open()))
        for secret in (PERSONAL_KEY, AMPLITUDE_KEY, AMPLITUDE_SECRET, POSTHOG_KEY):
            assert secret not in done.stdout + done.stderr
        return Report(done.returncode, done.stdout, done.stderr, rows)

    def stop(self) -> None:
        self.amplitude.stop()
        self.posthog.stop()


@pytest.fixture
def migration(tmp_path: Path) -> Iterator[Migration]:
    store = build_drill_store(tmp_path / "export")
    migration = Migration(tmp_path, store)
    yield migration
    migration.stop()


@pytest.fixture(scope="module")
def _migrated_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Migration]:
    workdir = tmp_path_factory.mktemp("migrated")
    migration = Migration(workdir, build_drill_store(workdir / "export"))
    try:
        migration.run()
        yield migration
    finally:
        migration.stop()


@pytest.fixture
def migrated(_migrated_once: Migration) -> Iterator[Migration]:
    """One complete migration shared by the tests that only verify it (one drill run instead of
    eight); what a test changes in the stand-ins' answers is put back after it."""
    yield _migrated_once
    _migrated_once.amplitude.dashboard.time_zone = "UTC"
    _migrated_once.amplitude.dashboard.queries_per_hour = None
    _migrated_once.posthog.query_api.queries_per_hour = 120
    _migrated_once.posthog.query_api.faults.clear()


def event_hours(events: list[dict[str, Any]]) -> Counter[str]:
    return Counter(f"{event['timestamp'][:13]}:00Z" for event in events)


def chart_days(store: ExportStore) -> Counter[str]:
    """What Amplitude's charts count per UTC day (identify rows are not chart events)."""
    return Counter(
        record["event_time"][:10]
        for record in store.iter_events()
        if record.get("event_type") not in NOT_IN_CHARTS
    )


def test_a_complete_migration_verifies_clean(migrated: Migration) -> None:
    report = migrated.verify()
    assert report.returncode == 0, report.stdout + report.stderr
    assert report.not_ok() == {}
    days = chart_days(migrated.store)
    assert {row["period"]: int(row["amplitude"]) for row in report.rows} == dict(days)
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


def test_dead_letters_are_explained_rows(tmp_path: Path) -> None:
    store = build_drill_store(tmp_path / "export", invalid_fraction=0.03)
    migration = Migration(tmp_path, store)
    try:
        migration.run()
        report = migration.verify()
    finally:
        migration.stop()
    assert report.returncode == 0, report.stdout + report.stderr
    letters = [orjson.loads(line) for line in (tmp_path / "run" / "dead-letter.jsonl").open("rb")]
    by_day: Counter[str] = Counter()
    by_upload: Counter[str] = Counter()
    reasons: dict[str, Counter[str]] = {}
    for letter in letters:
        record = letter["record"]
        when = _readable_time(record.get("event_time"))
        if when is None:
            by_upload[record["server_upload_time"][:13].replace(" ", "T")] += 1  # as exported
        else:
            by_day[when[:10]] += 1
            reasons.setdefault(when[:10], Counter())[letter["reason"]] += 1
    assert by_day and by_upload
    assert {
        row["period"]: int(row["dead_lettered"])
        for row in report.rows
        if int(row["dead_lettered"]) and not row["period"].startswith("no event time")
    } == dict(by_day)
    untimed = {
        row["period"].removeprefix("no event time, uploaded "): int(row["dead_lettered"])
        for row in report.rows
        if row["period"].startswith("no event time")
    }
    assert untimed == dict(by_upload)
    # Each record once: the column totals are the files' counts.
    assert sum(int(row["dead_lettered"]) for row in report.rows) == len(letters)
    assert sum(int(row["no_event_time"]) for row in report.rows) == sum(by_upload.values())
    for day, counted in reasons.items():  # the reasons, most frequent first
        ranked = sorted(counted.items(), key=lambda item: (-item[1], item[0]))
        top = ", ".join(f"{reason} {n}" for reason, n in ranked[:3])
        assert report.row(day)["status"].startswith(f"dead-lettered ({by_day[day]}: {top}")
    for period, status in report.not_ok().items():
        assert status.startswith("dead-lettered") and "dead-letter.jsonl" in status, period
        assert "missing in PostHog" not in status and "unexplained" not in status


def test_unreadable_lines_are_explained_and_the_registry_alone_verifies(tmp_path: Path) -> None:
    store = build_drill_store(tmp_path / "export")
    spoils = [b"null", b'{"event_type":"Half","user_id":"u', b"\x00\x1f\x8b\xff not a line"]
    lost = store.spoil_lines(DRILL_START + timedelta(hours=5), spoils)
    migration = Migration(tmp_path, store)
    try:
        migration.run()
        report = migration.verify("--period", "hour")
        # A fresh folder holding the registry and nothing else of the migration's (its dead
        # letters, set-aside lines and run folder are gone): the same report.
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        shutil.copy(migration.pipeline.target_config["alias_registry"], fresh / "registry.sqlite")
        shutil.rmtree(tmp_path / "run")
        alone = migration.verify("--period", "hour", cwd=fresh, alias_registry="registry.sqlite")
    finally:
        migration.stop()
    assert report.returncode == 0, report.stdout + report.stderr
    set_aside = tmp_path / "run" / "dead-letter.unreadable-lines.jsonl"
    charted = [r for r in lost if r.get("event_type") not in NOT_IN_CHARTS]
    assert charted  # the spoiled lines were events Amplitude's charts count
    gaps = event_hours([{"timestamp": r["event_time"].replace(" ", "T")} for r in charted])
    expected = {hour: f"no event time ({n}, see the rows at the end)" for hour, n in gaps.items()}
    expected["no event time, uploaded 2024-05-01T05"] = (
        f"unreadable lines set aside (3, see {set_aside}); {len(charted)} of them match periods "
        "above that lack events"
    )
    assert report.not_ok() == expected
    for hour, n in gaps.items():
        row = report.row(hour)
        assert int(row["amplitude"]) - int(row["read"]) + int(row["person_group_updates"]) == n
        assert int(row["no_event_time"]) == 0  # named in the status, counted once below
    assert int(report.row("no event time, uploaded 2024-05-01T05")["no_event_time"]) == 3
    assert sum(int(row["no_event_time"]) for row in report.rows) == 3  # was 3 + len(charted)
    assert sum(int(row["read"]) for row in report.rows) == store.event_count - 3
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert alone.rows == report.rows


def _readable_time(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%dT%H")
    except ValueError:
        return None


def test_events_uploaded_after_the_bookmark_are_not_read_yet_until_the_next_run(
    tmp_path: Path,
) -> None:
    store = build_drill_store(tmp_path / "export")
    migration = Migration(tmp_path, store)
    try:
        migration.run()
        # Late uploads: events of the first day that reach Amplitude a day later.
        late = ExportSpec(start=DRILL_START + timedelta(hours=HOURS + 2), hours=1, events=40,
                          seed=99)  # fmt: skip
        late_events = _backdated(store, late, tmp_path / "late", timedelta(hours=HOURS))
        report = migration.verify()
        assert report.returncode == 0, report.stdout + report.stderr
        waiting = chart_days_of(late_events)
        either = "not read yet, or uploaded before start_date"  # days before the first hour
        assert report.not_ok() == {
            day: f"{either if day < f'{DRILL_START:%Y-%m-%d}' else 'not read yet'} ({n}, run "
            "the migration again)"
            for day, n in waiting.items()
        }
        migration.run(end_date=(DRILL_START + timedelta(hours=HOURS + 4)).isoformat())
        again = migration.verify()
    finally:
        migration.stop()
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.not_ok() == {}


PARALLEL_NOW = datetime(2024, 6, 5, 12, tzinfo=UTC)  # a fixed clock: never the time of day


def unread_by_hour(
    store: ExportStore, low: datetime, high: datetime, before: datetime | None = None
) -> dict[str, int]:
    """Chart events (what Amplitude counts) uploaded in [low, high), by event hour label; only
    event hours before `before` if given."""
    found: Counter[str] = Counter()
    for record in store.iter_events():
        uploaded = datetime.fromisoformat(record["server_upload_time"]).replace(tzinfo=UTC)
        hour = datetime.fromisoformat(record["event_time"]).replace(
            tzinfo=UTC, minute=0, second=0, microsecond=0
        )
        if record.get("event_type") in NOT_IN_CHARTS or not low <= uploaded < high:
            continue
        if before is None or hour < before:
            found[f"{hour:%Y-%m-%dT%H:00Z}"] += 1
    return dict(found)


def test_parallel_range_jobs_leave_the_rest_of_a_range_not_read_yet(tmp_path: Path) -> None:
    """README "Parallel range jobs", near now (a fixed clock): the later job has read up to
    what Amplitude has loaded, the earlier one only its first 6 of 12 hours. Exactly the events
    uploaded in the hours between are "not read yet", in whatever hour they happened, before
    the migration's start_date too (only Amplitude knows whether such an event was uploaded
    before start_date or in the unread hours); never "unexplained"; once read, all is clean."""
    start = PARALLEL_NOW - timedelta(hours=26)  # up to now - 2 h: what Amplitude has loaded
    middle = start + timedelta(hours=12)
    spec = ExportSpec(start=start, hours=24, events=600, seed=7)
    migration = Migration(tmp_path, ExportStore.build(tmp_path / "export", spec))
    try:
        later = Pipeline(
            tmp_path / "run-later",
            drill_tap_config(migration.amplitude, 24, start_date=middle.isoformat(),
                             end_date=(start + timedelta(hours=24)).isoformat()),
            migration.pipeline.target_config,  # the same registry
        )  # fmt: skip
        assert later.run(None).ok
        # Only the later job has run: the earlier one's range is not read yet, known as the
        # migration's through start_date (the ledger alone starts where the later job does).
        not_begun = migration.verify(
            "--period", "hour", now=PARALLEL_NOW, amplitude_start_date=start.isoformat()
        )
        migration.run(
            start_date=start.isoformat(), end_date=(start + timedelta(hours=6)).isoformat()
        )
        halfway = migration.verify("--period", "hour", now=PARALLEL_NOW)
        migration.run(end_date=middle.isoformat())  # the earlier job, resumed to its end
        done = migration.verify("--period", "hour", now=PARALLEL_NOW)
    finally:
        migration.stop()
    assert not_begun.returncode == 0, not_begun.stdout + not_begun.stderr
    first = not_begun.rows[0]["period"]  # the first hour read, or start_date if earlier
    assert first <= f"{start:%Y-%m-%dT%H}"
    assert {row["period"]: int(row["not_read_yet"]) for row in not_begun.rows if
            row["status"] != "OK"} == {hour: n for hour, n in unread_by_hour(
                migration.store, start, middle).items() if hour >= first}  # fmt: skip
    assert all(s.startswith("not read yet") for s in not_begun.not_ok().values())
    assert halfway.returncode == 0, halfway.stdout + halfway.stderr
    unread = unread_by_hour(migration.store, start + timedelta(hours=6), middle)
    early = unread_by_hour(migration.store, start + timedelta(hours=6), middle, before=start)
    assert early  # this clock and seed: an event of before start_date uploaded in the gap
    assert halfway.not_ok() == {
        hour: f"not read yet, or uploaded before start_date ({n}, run the migration again)"
        if hour in early
        else f"not read yet ({n}, run the migration again)"
        for hour, n in unread.items()
    }
    assert {row["period"]: int(row["not_read_yet"]) for row in halfway.rows if
            row["status"] != "OK"} == unread  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.not_ok() == {}
    assert sum(int(row["read"]) for row in done.rows) == migration.store.event_count


def test_events_uploaded_before_start_date_are_not_migrated_not_unread(tmp_path: Path) -> None:
    """Amplitude counts the whole of each period; the migration reads from its start_date (by
    upload time). Once it has read everything since, the rest of a period that begins before
    start_date is "before start_date, not migrated", an explained row, not "not read yet"
    (running again would never read it)."""
    start = PARALLEL_NOW - timedelta(hours=26)
    begins = start + timedelta(hours=6)  # the migration's start_date
    store = ExportStore.build(tmp_path / "export", ExportSpec(start=start, hours=24, events=600,
                                                              seed=7))  # fmt: skip
    migration = Migration(tmp_path, store)
    try:
        migration.run(
            start_date=begins.isoformat(), end_date=(start + timedelta(hours=24)).isoformat()
        )
        hourly = migration.verify(
            "--period", "hour", "--start", start.isoformat(), now=PARALLEL_NOW
        )
        daily = migration.verify("--start", start.isoformat(), now=PARALLEL_NOW)
    finally:
        migration.stop()
    before = {  # the report's hours: from --start on
        hour: n
        for hour, n in unread_by_hour(store, start - timedelta(days=30), begins).items()
        if hour >= f"{start:%Y-%m-%dT%H}"
    }
    assert before
    line = "before start_date, not migrated ({n} uploaded before %s, where the migration starts)"
    line %= f"{begins:%Y-%m-%dT%H:00Z}"
    assert hourly.returncode == 0, hourly.stdout + hourly.stderr
    assert hourly.not_ok() == {hour: line.format(n=n) for hour, n in before.items()}
    for hour, n in before.items():
        assert int(hourly.row(hour)["before_start"]) == n
    assert sum(int(row["before_start"]) for row in hourly.rows) == sum(before.values())
    days: Counter[str] = Counter()  # the report's days: from --start's day on, all of it
    for hour, n in unread_by_hour(store, start - timedelta(days=30), begins).items():
        if hour[:10] >= f"{start:%Y-%m-%d}":
            days[hour[:10]] += n
    assert daily.returncode == 0, daily.stdout + daily.stderr
    assert daily.not_ok() == {day: line.format(n=n) for day, n in days.items()}


def test_the_report_runs_through_end_date_or_now_marking_what_no_run_has_read(
    tmp_path: Path,
) -> None:
    """A migration stopped halfway (its ledger ends there): Amplitude's later history is in
    the report as "not read yet", through tap-amplitude's end_date, else through now."""
    start = PARALLEL_NOW - timedelta(hours=26)
    halfway = start + timedelta(hours=12)
    store = ExportStore.build(tmp_path / "export", ExportSpec(start=start, hours=24, events=600,
                                                              seed=7))  # fmt: skip
    migration = Migration(tmp_path, store)
    try:
        migration.run(start_date=start.isoformat(), end_date=halfway.isoformat())
        to_now = migration.verify("--period", "hour", now=PARALLEL_NOW, amplitude_end_date=None)
        end_date = (start + timedelta(hours=24)).isoformat()
        to_end = migration.verify("--period", "hour", now=PARALLEL_NOW, amplitude_end_date=end_date)
    finally:
        migration.stop()
    unread = unread_by_hour(store, halfway, PARALLEL_NOW)
    assert max(unread) > f"{halfway:%Y-%m-%dT%H}"  # hours after the ledger's last among them
    for report, last in ((to_now, PARALLEL_NOW), (to_end, PARALLEL_NOW - timedelta(hours=3))):
        assert report.returncode == 0, report.stdout + report.stderr
        assert report.rows[-1]["period"] == f"{last:%Y-%m-%dT%H}:00Z"  # was the ledger's last
        assert {row["period"]: int(row["not_read_yet"]) for row in report.rows if
                int(row["not_read_yet"])} == unread  # fmt: skip
        assert all(s.startswith("not read yet") for s in report.not_ok().values())


def chart_days_of(records: list[dict[str, Any]]) -> Counter[str]:
    return Counter(
        r["event_time"][:10] for r in records if r.get("event_type") not in NOT_IN_CHARTS
    )


def _backdated(
    store: ExportStore, spec: ExportSpec, scratch: Path, back: timedelta
) -> list[dict[str, Any]]:
    """Add `spec`'s events to `store` with event times moved `back` (uploaded late)."""
    generated = ExportStore.build(scratch, spec)
    records = []
    for record in generated.iter_events():
        for name in ("event_time", "client_event_time"):
            if isinstance(record.get(name), str):
                moment = datetime.fromisoformat(record[name]).replace(tzinfo=UTC) - back
                record[name] = moment.strftime("%Y-%m-%d %H:%M:%S.%f")
        records.append(record)
    store.add_records(records)
    return records


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


def test_a_wrong_time_zone_is_hinted_by_day_and_hour_despite_dead_letters(
    tmp_path: Path,
) -> None:
    """A real migration has dead letters and records without a time: Amplitude's moved counts
    then match the migration's closely, not exactly. The hint must still come, by day (the
    default) as by hour; it came for neither with 3 % of lines dead-lettered."""
    store = build_drill_store(tmp_path / "export", invalid_fraction=0.03)
    migration = Migration(tmp_path, store)
    found = {}
    try:
        migration.run()
        for zone in ("America/Los_Angeles", "Asia/Tokyo"):
            migration.amplitude.dashboard.time_zone = zone
            for period in ("day", "hour"):
                report = migration.verify("--period", period, amplitude_time_zone="UTC")
                assert report.returncode == 1, report.stdout + report.stderr
                [hint] = [line for line in report.stderr.splitlines() if "seem to" in line]
                found[zone, period] = hint
        migration.amplitude.dashboard.time_zone = "UTC"
        right = migration.verify(amplitude_time_zone="UTC")
    finally:
        migration.stop()
    later = re.escape(
        "target-posthog-verify: Amplitude's hourly counts match the migration's once moved 7 h "
        "later: amplitude_time_zone is UTC, but the project's charts seem to count in UTC-07:00 "
        "around 2024-"
    )
    earlier = re.escape(
        "target-posthog-verify: Amplitude's hourly counts match the migration's once moved 9 h "
        "earlier: amplitude_time_zone is UTC, but the project's charts seem to count in "
        "UTC+09:00 around 2024-"
    )
    for (zone, _), hint in found.items():
        assert re.match(later if zone == "America/Los_Angeles" else earlier, hint), hint
    assert right.returncode == 0 and "seem to" not in right.stderr  # no hint when it is right


def test_hours_around_a_dst_change_are_counted_once_each(tmp_path: Path) -> None:
    # 2024-11-03: Los Angeles falls back at 09:00 UTC, so 01:00 local happens twice.
    spec = ExportSpec(start=datetime(2024, 11, 3, 4, tzinfo=UTC), hours=10, events=600, seed=5)
    store = ExportStore.build(tmp_path / "export", spec)
    with AmplitudeStandIn(store, AMPLITUDE_KEY, AMPLITUDE_SECRET) as amplitude:
        amplitude.dashboard.time_zone = "America/Los_Angeles"
        counts = AmplitudeCounts(
            base_url=amplitude.url, api_key=AMPLITUDE_KEY, secret_key=AMPLITUDE_SECRET,
            time_zone="America/Los_Angeles", timeout=5, retry=RetryPolicy(0, 0.01),
        )  # fmt: skip
        found = counts.counts(spec.start, spec.start + timedelta(hours=10), by_day=False)
        labels = amplitude.dashboard.requests[-1].params
    expected = Counter(
        datetime.fromisoformat(r["event_time"]).replace(tzinfo=UTC, minute=0, second=0,
                                                        microsecond=0)
        for r in store.iter_events()
        if r.get("event_type") not in NOT_IN_CHARTS
    )  # fmt: skip
    expected = Counter(
        {h: n for h, n in expected.items() if spec.start <= h < spec.end + timedelta(hours=1)}
    )
    assert found == dict(expected)
    assert labels["i"] == "-3600000"


def test_a_zone_with_half_hour_offsets_is_refused_in_one_line(migrated: Migration) -> None:
    migrated.amplitude.dashboard.time_zone = "Asia/Kolkata"
    report = migrated.verify(amplitude_time_zone="Asia/Kolkata")
    assert report.returncode == 2
    [line] = report.error_lines()
    assert re.fullmatch(
        "target-posthog-verify: cannot verify: the Amplitude project's time zone Asia/Kolkata "
        r"is UTC\+05:30 on 2024-04-\d\d: its hourly buckets do not line up with UTC hours, so "
        "they cannot be compared hour by hour with the migration",
        line,
    )
    assert "Traceback" not in report.stderr


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
    ("arguments", "line"),
    [
        (("--start", "2024-13-01"), "--start '2024-13-01' is not a UTC date (YYYY-MM-DD) or hour "
                                    "(YYYY-MM-DDTHH:00)"),
        (("--period", "week"), "Invalid value for '--period': 'week' is not one of 'day', 'hour'."),
        (("--bogus",), "No such option '--bogus'."),
    ],
)  # fmt: skip
def test_a_usage_error_is_one_line_exit_2(
    migrated: Migration, arguments: tuple[str, ...], line: str
) -> None:
    report = migrated.verify(*arguments)
    assert (report.returncode, report.stderr) == (2, f"target-posthog-verify: {line}\n")
    assert report.stdout == ""  # was click's four-line usage block


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
    counting, *said = report.stderr.splitlines()  # was one "retrying" line per retry too
    assert counting.startswith("target-posthog-verify: counting 2024-")
    assert said == [
        "target-posthog-verify: cannot verify: PostHog's query API is rate limiting this key "
        "(429: injected status 429; 3 retries with backoff). HogQL allows about 120 queries an "
        "hour per key: run the verification again later"
    ]
    # A storm that ends: no line per retry either, the summary counts them.
    migrated.posthog.query_api.faults.clear()
    migrated.posthog.query_api.faults.inject(Fault.status(429, retry_after=0.05), times=2)
    passed = migrated.verify(max_retries=3)
    assert passed.returncode == 0, passed.stderr
    lines = passed.stderr.splitlines()
    assert len(lines) == 3 and lines[1].endswith("PostHog queries; 2 retried (429, 5xx, timeouts)")

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


def test_a_ledger_in_a_postgresql_registry_verifies_the_same(
    tmp_path: Path, postgres_url: str
) -> None:
    store = build_drill_store(tmp_path / "export")
    migration = Migration(tmp_path, store)
    migration.pipeline.target_config["alias_registry"] = postgres_url
    try:
        migration.run()
        clean = migration.verify()
        migration.posthog.remove_events(
            lambda e: (
                e["timestamp"].startswith("2024-05-01T07")
                and e["event"] != "$create_alias"
                and UPDATE_MARKER not in e["properties"]
            )
        )
        lost = migration.verify("--period", "hour", "--settle-hours", "0")
    finally:
        migration.stop()
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.not_ok() == {}
    assert sum(int(row["read"]) for row in clean.rows) == store.event_count
    assert lost.returncode == 1
    [(hour, status)] = lost.not_ok().items()
    assert hour == "2024-05-01T07:00Z" and status.startswith("missing in PostHog (")
    password = postgres_url.split(":")[2].split("@")[0]
    assert password not in clean.stdout + clean.stderr + lost.stdout + lost.stderr


def test_every_record_set_aside_reaches_the_ledger_even_one_singer_sdk_refuses(
    tmp_path: Path,
) -> None:
    """The ledger counts what the run set aside whichever way: records the mapping refuses (no
    time), an unreadable line, and an unreadable line singer-sdk refuses (no line_number), by
    upload hour (the hour being read when a record's own is unreadable)."""
    hour, later = "2024-03-01T05:00:00+00:00", "2024-03-01T06:00:00+00:00"
    line = {"member": "m_2024-03-01_5#0.json.gz", "line_number": 3, "reason": "not JSON",
            "line_base64": "bnVsbA==", "hour": hour}  # fmt: skip
    no_time = {"uuid": "0b9f1c2e-0000-4000-8000-000000000001", "event_type": "Clicked",
               "user_id": "u1", "server_upload_time": "2024-03-01 05:10:00.000000"}  # fmt: skip
    schema = {"type": "object", "properties": {k: {} for k in (*line, "source", "byte_length")}}
    messages = [
        {
            "type": "SCHEMA",
            "stream": "unreadable_lines",
            "schema": schema,
            "key_properties": ["member", "line_number"],
        },
        {"type": "RECORD", "stream": "unreadable_lines", "record": line},
        {
            "type": "RECORD",
            "stream": "unreadable_lines",
            "record": {k: v for k, v in line.items() if k != "line_number"},
        },
        {
            "type": "SCHEMA",
            "stream": "events",
            "schema": {"type": "object", "properties": {}},
            "key_properties": ["uuid"],
        },
        {"type": "RECORD", "stream": "events", "record": no_time},
        {"type": "STATE", "value": {"bookmarks": {"events": {"replication_key_value": hour}}}},
        # No readable upload time: counted in the hour being read (after the bookmark above).
        {"type": "RECORD", "stream": "events", "record": no_time | {"server_upload_time": "?"}},
        {"type": "STATE", "value": {"bookmarks": {"events": {"replication_key_value": later}}}},
    ]
    config = target_config(tmp_path)
    run = run_target(config, messages, tmp_path)
    assert run.returncode == 0, run.stderr
    ledger = read_ledger(config["alias_registry"])
    assert {(u.upload_hour, u.what, u.count) for u in ledger.untimed} == {
        ("2024-03-01T05", "unreadable lines set aside", 2),
        (
            "2024-03-01T05",
            "dead-lettered: no time: event_time, client_event_time, server_received_time all "
            "missing or not times",
            2,
        ),
    }


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
