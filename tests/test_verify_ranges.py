"""`target-posthog-verify` over a migration's range: what no run has read yet (after the
bookmark, between parallel range jobs, after the ledger's last hour) and what lies before the
migration's start_date. On a fixed clock: never the time of day the tests run at."""

from __future__ import annotations

import itertools
import subprocess
import threading
from collections import Counter
from datetime import timedelta
from pathlib import Path

import orjson
from target_posthog.event_keys import record_uuid

from tests.conftest import TAP_AMPLITUDE, tap_environment
from tests.pipeline_harness import (
    DRILL_START,
    Pipeline,
    build_drill_store,
    drill_tap_config,
)
from tests.target_support import start_target
from tests.testbed.dashboard import NOT_IN_CHARTS
from tests.testbed.events import ExportSpec
from tests.testbed.store import ExportStore
from tests.verify_harness import (
    HOURS,
    PARALLEL_NOW,
    Migration,
    backdated,
    chart_days_of,
    unread_by_hour,
)


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
        late_events = backdated(store, late, tmp_path / "late", timedelta(hours=HOURS))
        widened = (DRILL_START + timedelta(hours=HOURS + 4)).isoformat()  # the next end_date
        report = migration.verify(amplitude_end_date=widened)
        assert report.returncode == 0, report.stdout + report.stderr
        waiting = chart_days_of(late_events)
        # From start_date on: days before it are counted in the row of events dated outside.
        assert report.not_ok() == {
            day: f"not read yet, or uploaded after end_date ({n}, run the migration again)"
            for day, n in waiting.items()
            if day >= f"{DRILL_START:%Y-%m-%d}"
        }
        migration.run(end_date=widened)
        again = migration.verify()
    finally:
        migration.stop()
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.not_ok() == {}


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
    first = not_begun.rows[0]["period"]  # start_date: earlier event hours are outside
    assert first == f"{start:%Y-%m-%dT%H}:00Z"
    assert {row["period"]: int(row["not_read_yet"]) for row in not_begun.rows if
            row["status"] != "OK"} == {hour: n for hour, n in unread_by_hour(
                migration.store, start, middle).items() if hour >= first}  # fmt: skip
    assert all(s.startswith("not read yet") for s in not_begun.not_ok().values())
    assert halfway.returncode == 0, halfway.stdout + halfway.stderr
    unread = {  # from start_date on: earlier event hours are in the outside row
        hour: n
        for hour, n in unread_by_hour(migration.store, start + timedelta(hours=6), middle).items()
        if hour >= first
    }
    assert halfway.not_ok() == {
        hour: f"not read yet, or uploaded after end_date ({n}, run the migration again)"
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
    (running again would never read it). No end_date known (a migration running on through
    now): with one passed, late uploads are the other possibility (test_verify_range_ends)."""
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
            "--period", "hour", "--start", start.isoformat(), now=PARALLEL_NOW,
            amplitude_end_date=None,
        )  # fmt: skip
        daily = migration.verify(
            "--start", start.isoformat(), now=PARALLEL_NOW, amplitude_end_date=None
        )
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
    unread = {  # from start_date on: earlier event hours are in the outside row
        hour: n
        for hour, n in unread_by_hour(store, halfway, PARALLEL_NOW).items()
        if hour >= f"{start:%Y-%m-%dT%H}"
    }
    assert max(unread) > f"{halfway:%Y-%m-%dT%H}"  # hours after the ledger's last among them
    for report, last in ((to_now, PARALLEL_NOW), (to_end, PARALLEL_NOW - timedelta(hours=3))):
        assert report.returncode == 0, report.stdout + report.stderr
        assert report.periods()[-1]["period"] == f"{last:%Y-%m-%dT%H}:00Z"
        assert {row["period"]: int(row["not_read_yet"]) for row in report.rows if
                int(row["not_read_yet"])} == unread  # fmt: skip
        assert all(s.startswith("not read yet") for s in report.not_ok().values())


def test_a_shortfall_in_hours_read_through_a_past_end_date_is_unexplained(tmp_path: Path) -> None:
    """A bounded job (end_date in the past, as every rehearsal) read its whole range: running
    again reads nothing more, so events Amplitude counts in those hours that the migration never
    read are "unexplained" (exit 1), never "not read yet"; periods past end_date say so."""
    store = build_drill_store(tmp_path / "export")
    migration = Migration(tmp_path, store)
    try:
        migration.run()
        # Events of the range that the migration never read (as if a stream map dropped them).
        lost = ExportSpec(start=DRILL_START + timedelta(hours=3), hours=1, events=30, seed=5)
        lost_events = list(ExportStore.build(tmp_path / "lost", lost).iter_events())
        store.add_records(lost_events)
        report = migration.verify("--period", "hour")
        beyond = migration.verify(
            "--period", "hour", "--end", f"{DRILL_START + timedelta(hours=HOURS + 1):%Y-%m-%dT%H}"
        )
    finally:
        migration.stop()
    missing = Counter(
        f"{record['event_time'][:13].replace(' ', 'T')}:00Z"
        for record in lost_events
        if record.get("event_type") not in NOT_IN_CHARTS
        and record["event_time"] >= str(DRILL_START)[:19]
    )
    assert missing
    assert report.returncode == 1, report.stdout + report.stderr
    late = ", or uploaded after end_date"
    assert report.not_ok() == {
        hour: f"unexplained ({n} that Amplitude counts were never read{late})"
        for hour, n in missing.items()
    }
    assert all(int(row["not_read_yet"]) == 0 for row in report.rows)
    last = f"{DRILL_START + timedelta(hours=HOURS):%Y-%m-%dT%H}:00Z"
    assert beyond.row(last)["status"] == "OK"  # nothing there: the row is plain


def test_events_confirmed_after_the_last_checkpoint_are_explained_while_a_run_is_under_way(
    tmp_path: Path,
) -> None:
    """Verifying while a run is under way (or after Ctrl-C): PostHog holds the events of full
    batches confirmed after the tap's last STATE, which the ledger records only with the next
    STATE. While the migration's range is not read to its end, that surplus is "delivered
    after the last checkpoint" (exit 0), not "unexplained"; once the run ends, it is clean."""
    migration = Migration(tmp_path, build_drill_store(tmp_path / "export"))
    config = tmp_path / "tap-config.json"
    config.write_bytes(orjson.dumps(migration.pipeline.tap_config))
    tap = subprocess.run([str(TAP_AMPLITUDE), "--config", str(config)], capture_output=True,
                         env=tap_environment(), timeout=120, check=True)  # fmt: skip
    messages = [orjson.loads(line) for line in tap.stdout.splitlines()]
    states = [n for n, message in enumerate(messages) if message["type"] == "STATE"]
    batch = migration.pipeline.target_config["batch_size"]
    last, cut = next(  # a STATE followed by more than a batch of records before the next one
        (low, high)
        for low, high in itertools.pairwise(states[2:])
        if sum(m["type"] == "RECORD" for m in messages[low:high]) > batch
    )
    beyond = {record_uuid(m["record"]) for m in messages[last:cut] if m["type"] == "RECORD"}
    target = start_target(migration.pipeline.target_config, tmp_path / "run")
    assert target.stdin is not None
    try:
        target.stdin.write(b"".join(orjson.dumps(m) + b"\n" for m in messages[:cut]))
        target.stdin.flush()
        for _ in range(600):  # bounded: until PostHog confirmed a batch past the last STATE
            if beyond & migration.posthog.accepted_uuids():
                break
            threading.Event().wait(0.05)
        running = migration.verify("--period", "hour")
        target.stdin.close()
        assert target.wait(timeout=60) == 0
        ended = migration.verify("--period", "hour")
    finally:
        if target.poll() is None:
            target.kill()
        migration.stop()
    surplus = {
        row["period"]: int(row["posthog"]) - int(row["delivered"])
        for row in running.rows
        if int(row["posthog"] or 0) > int(row["delivered"])
    }
    assert surplus  # confirmed after the last STATE the ledger holds
    assert running.returncode == 0, running.stdout + running.stderr
    for period, n in surplus.items():
        assert (
            f"delivered after the last checkpoint ({n} more in PostHog than the ledger "
            "records, run the migration again)" in running.row(period)["status"]
        )
    assert "unexplained" not in running.stdout
    assert ended.returncode == 0, ended.stdout + ended.stderr  # the rest: not read yet
    assert all(int(row["posthog"]) == int(row["delivered"]) for row in ended.rows)


def test_outlier_event_times_are_one_row_and_year_1_is_asked_as_a_4_digit_date(
    tmp_path: Path,
) -> None:
    """Device clocks at year 1, 1970 or 2099 in an export of two days: the default report
    runs over the migrated upload range (start_date .. end_date), not 1970 .. 2099 (47,118
    rows, 130 Amplitude queries); what the migration delivered dated outside it is one row,
    against PostHog. Asked for year 1 itself, Amplitude gets 00010101, not 1-01-01."""
    store = build_drill_store(tmp_path / "export")
    extra = build_drill_store(tmp_path / "extra", seed=4, hours=2, events=30)
    odd = [r for r in extra.iter_events() if r.get("event_type") not in NOT_IN_CHARTS][:3]
    for record, when in zip(odd, ("0001-01-01 00:00:00", "1970-01-01 00:00:05",
                                  "2099-01-01 00:00:00"), strict=True):  # fmt: skip
        record["event_time"] = when
    store.add_records(odd)
    migration = Migration(tmp_path, store)
    try:
        migration.run()
        report = migration.verify()
        asked = len(migration.amplitude.dashboard.requests)
        year_1 = migration.verify("--start", "0001-01-01", "--end", "0001-01-03")
        year_1_asked = [r.params for r in migration.amplitude.dashboard.requests[asked:]]
    finally:
        migration.stop()
    assert report.returncode == 0, report.stdout + report.stderr
    assert [row["period"] for row in report.periods()] == ["2024-05-01"]
    outside = report.outside()
    assert outside is not None  # the 1970 event; year 1 and 2099 went at client_event_time
    assert outside["period"] == (
        "event time outside 2024-05-01 .. 2024-05-02 (Amplitude not asked: --start/--end "
        "compare them by period)"
    )
    assert outside["status"] == "OK" and outside["delivered"] == outside["posthog"]
    assert asked == 1
    assert year_1.returncode == 0, year_1.stdout + year_1.stderr
    assert year_1.row("0001-01-01")["amplitude"] == "1"  # Amplitude counts it by event_time
    assert [(p["start"], p["end"]) for p in year_1_asked] == [("00010101", "00010102")]


def test_a_bounded_job_after_start_date_reports_before_start_date_at_the_real_clock(
    tmp_path: Path,
) -> None:
    """A rehearsal (end_date in the past, the real clock): with start_date after some events'
    upload, the first day's rest is "uploaded before start_date or after end_date" once the
    range is read, never "not read yet, or uploaded before start_date" (running again would
    read nothing)."""
    store = build_drill_store(tmp_path / "export")
    begins = DRILL_START + timedelta(hours=6)
    migration = Migration(tmp_path, store)
    try:
        migration.run(start_date=begins.isoformat())
        report = migration.verify()
    finally:
        migration.stop()
    before = sum(unread_by_hour(store, DRILL_START - timedelta(days=30), begins,
                                before=DRILL_START + timedelta(days=1)).values())  # fmt: skip
    before -= sum(unread_by_hour(store, DRILL_START - timedelta(days=30), begins,
                                 before=DRILL_START).values())  # fmt: skip
    assert before
    assert report.returncode == 0, report.stdout + report.stderr
    assert report.not_ok() == {
        f"{DRILL_START:%Y-%m-%d}": "uploaded before start_date or after end_date, outside this "
        f"job's range ({before}: before {begins:%Y-%m-%dT%H}:00Z or after "
        f"{DRILL_START + timedelta(hours=HOURS):%Y-%m-%dT%H}:00Z)"
    }
