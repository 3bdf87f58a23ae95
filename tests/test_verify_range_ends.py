"""`target-posthog-verify`'s labels once end_date has passed: they name every possibility the
counts leave open (Amplitude counts an event by its time, however late it was uploaded, so any
period's events may have been uploaded after end_date). On a fixed clock."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

from tests.testbed.dashboard import NOT_IN_CHARTS
from tests.testbed.events import ExportSpec
from tests.testbed.store import ExportStore
from tests.verify_harness import PARALLEL_NOW, Migration, backdated, unread_by_hour


def test_labels_name_uploads_after_a_passed_end_date_before_start_and_while_unread(
    tmp_path: Path,
) -> None:
    """A job 06:00 .. 18:00, end_date passed. While it has read only 06:00 .. 10:00, hours in
    its range are "not read yet, or uploaded after end_date" (was "not read yet (n, run the
    migration again)": running again never reads a late upload), hours before it also name
    start_date. Once read to its end, hours before it are "before start_date or after
    end_date" (was "before start_date, not migrated": some were uploaded after end_date)."""
    start = PARALLEL_NOW - timedelta(hours=36)  # 2024-06-04T00:00
    store = ExportStore.build(tmp_path / "export", ExportSpec(start=start, hours=24, events=600,
                                                              seed=7))  # fmt: skip
    begins, ends = start + timedelta(hours=6), start + timedelta(hours=18)
    since = ("--period", "hour", "--start", f"{start:%Y-%m-%dT%H}")
    migration = Migration(tmp_path, store)
    try:
        read_to = begins + timedelta(hours=4)
        migration.run(start_date=begins.isoformat(), end_date=read_to.isoformat())
        halfway = migration.verify(*since, now=PARALLEL_NOW, amplitude_end_date=ends.isoformat())
        migration.run(end_date=ends.isoformat())
        done = migration.verify(*since, now=PARALLEL_NOW)
    finally:
        migration.stop()
    # Events of each hour not read: uploaded before start_date, or after what was read.
    rest = Counter(unread_by_hour(store, start - timedelta(days=30), begins))
    rest.update(unread_by_hour(store, read_to, PARALLEL_NOW))
    late = Counter(unread_by_hour(store, start - timedelta(days=30), begins))
    late.update(unread_by_hour(store, ends, PARALLEL_NOW))
    first_hour = f"{begins:%Y-%m-%dT%H}:00Z"
    expected = {}
    for hour, n in rest.items():
        if f"{start:%Y-%m-%dT%H}" <= hour < f"{ends:%Y-%m-%dT%H}":
            outside = (
                "before start_date or after end_date" if hour < first_hour else "after end_date"
            )
            expected[hour] = f"not read yet, or uploaded {outside} ({n}, run the migration again)"
    assert any(hour < first_hour for hour in expected)
    assert halfway.returncode == 0, halfway.stdout + halfway.stderr
    assert halfway.not_ok() == expected
    outside_range = {hour: n for hour, n in late.items() if hour < first_hour}
    assert outside_range
    for hour, n in outside_range.items():
        row = done.row(hour)
        assert row["status"] == (
            f"uploaded before start_date or after end_date, outside this job's range ({n}: "
            f"before {begins:%Y-%m-%dT%H}:00Z or after {ends:%Y-%m-%dT%H}:00Z)"
        )
        assert (row["before_start_or_after_end"], row["before_start"]) == (str(n), "0")
    # Hours within the range whose events were uploaded after end_date: the counts cannot
    # tell them from events never read (exit 1), and say both.
    within = {h: n for h, n in late.items() if first_hour <= h < f"{ends:%Y-%m-%dT%H}:00Z"}
    for hour, n in within.items():
        assert done.row(hour)["status"] == (
            f"unexplained ({n} that Amplitude counts were never read, or uploaded after end_date)"
        )
    assert done.returncode == (1 if within else 0), done.stdout + done.stderr


def test_a_range_within_one_day_is_judged_by_hour_as_an_hourly_report(tmp_path: Path) -> None:
    """A job whose range lies within one day (06:00 .. 18:00): the day is judged from
    Amplitude's hourly counts, hour by hour, the causes summed. Its hours before the range are
    "before start_date or after end_date", after it "after end_date", within it "not read yet"
    while unread. Events of 13:xx uploaded in an hour the job read, never read, make the day
    "unexplained", exit 1, as the hourly report (was: the whole day's rest "uploaded before
    start_date or after end_date, outside this job's range", exit 0)."""
    start = PARALLEL_NOW - timedelta(hours=36)  # 2024-06-04T00:00, a whole day of uploads
    store = ExportStore.build(tmp_path / "export", ExportSpec(start=start, hours=24, events=600,
                                                              seed=7))  # fmt: skip
    begins, ends = start + timedelta(hours=6), start + timedelta(hours=18)
    read_to = begins + timedelta(hours=4)
    ever = start - timedelta(days=30)
    day, ended = f"{start:%Y-%m-%d}", f"{ends:%Y-%m-%dT%H}:00Z"
    total = unread_by_hour(store, ever, PARALLEL_NOW)

    def rest(low: datetime, high: datetime) -> dict[str, int]:
        """Per event hour of the day: Amplitude's count less what was read, uploads [low, high)."""
        read = unread_by_hour(store, low, high)
        return {h: n - read.get(h, 0) for h, n in total.items() if h.startswith(day)}

    halfway_rest, done_rest = rest(begins, read_to), rest(begins, ends)
    migration = Migration(tmp_path, store)
    try:
        migration.run(start_date=begins.isoformat(), end_date=read_to.isoformat())
        halfway = migration.verify(now=PARALLEL_NOW, amplitude_end_date=ends.isoformat())
        migration.run(end_date=ends.isoformat())
        lost = backdated(store, ExportSpec(start=start + timedelta(hours=13), hours=1, events=25,
                                           seed=3), tmp_path / "lost", timedelta(0))  # fmt: skip
        daily = migration.verify(now=PARALLEL_NOW)
        hourly = migration.verify("--period", "hour", "--start", f"{start:%Y-%m-%dT%H}",
                                  "--end", f"{start + timedelta(days=1):%Y-%m-%dT%H}",
                                  now=PARALLEL_NOW)  # fmt: skip
    finally:
        migration.stop()
    first = f"{begins:%Y-%m-%dT%H}:00Z"

    def part(counts: dict[str, int], low: str, high: str) -> int:
        return sum(n for h, n in counts.items() if low <= h < high)

    before, within = part(halfway_rest, "", first), part(halfway_rest, first, ended)
    after = part(halfway_rest, ended, "~")
    assert before and within and after
    assert halfway.returncode == 0, halfway.stdout + halfway.stderr
    assert halfway.not_ok() == {
        day: f"not read yet, or uploaded before start_date or after end_date ({before}, run the "
        f"migration again); not read yet, or uploaded after end_date ({within}, run the "
        f"migration again); uploaded after end_date, outside this job's range ({after} after "
        f"{ends:%Y-%m-%dT%H}:00Z)"
    }
    row = halfway.row(day)
    assert (row["not_read_yet"], row["after_end"]) == (str(before + within), str(after))
    never = Counter(f"{r['event_time'][:13].replace(' ', 'T')}:00Z" for r in lost
                    if r.get("event_type") not in NOT_IN_CHARTS)  # fmt: skip
    assert never and all(first <= hour < ended for hour in never)
    unread = Counter({h: n for h, n in done_rest.items() if first <= h < ended and n})
    unread.update(never)
    before, after = part(done_rest, "", first), part(done_rest, ended, "~")
    assert daily.returncode == 1, daily.stdout + daily.stderr
    assert daily.not_ok() == {
        day: "uploaded before start_date or after end_date, outside this job's range "
        f"({before}: before {first} or after {ended}); unexplained ({unread.total()} that "
        "Amplitude counts were never read, or uploaded after end_date); uploaded after "
        f"end_date, outside this job's range ({after} after {ended})"
    }
    row = daily.row(day)
    assert (row["before_start_or_after_end"], row["after_end"]) == (str(before), str(after))
    assert hourly.returncode == 1, hourly.stdout + hourly.stderr
    for hour, n in unread.items():
        assert hourly.row(hour)["status"] == (
            f"unexplained ({n} that Amplitude counts were never read, or uploaded after end_date)"
        )


def test_start_and_end_dates_within_an_hour_are_read_as_the_tap_reads_them(
    tmp_path: Path,
) -> None:
    """start_date 06:30, end_date 17:45: tap-amplitude reads whole upload hours, 06:00 ..
    17:00, so the hour 17:00 is wholly after what any run of this job reads: "uploaded after
    end_date, outside this job's range (n after ...T17:00Z)", said once why. It read "not read
    yet, or uploaded after end_date (n, run the migration again)": running again reads none."""
    start = PARALLEL_NOW - timedelta(hours=36)  # 2024-06-04T00:00
    store = ExportStore.build(tmp_path / "export", ExportSpec(start=start, hours=24, events=600,
                                                              seed=7))  # fmt: skip
    begins = start + timedelta(hours=6, minutes=30)
    ends = start + timedelta(hours=17, minutes=45)
    migration = Migration(tmp_path, store)
    try:
        migration.run(start_date=begins.isoformat(), end_date=ends.isoformat())
        hour = start + timedelta(hours=17)
        report = migration.verify("--period", "hour", "--start", f"{hour:%Y-%m-%dT%H}:00",
                                  "--end", f"{hour + timedelta(hours=1):%Y-%m-%dT%H}:00",
                                  now=PARALLEL_NOW)  # fmt: skip
    finally:
        migration.stop()
    last = f"{start + timedelta(hours=17):%Y-%m-%dT%H}:00Z"
    status = report.row(last)["status"]
    assert status.startswith("uploaded after end_date, outside this job's range ("), status
    assert status.endswith(f" after {last})"), status
    assert (
        "tap-amplitude reads whole upload hours, so this report does too: start_date "
        f"{begins:%Y-%m-%dT%H:%M} from {begins:%Y-%m-%dT%H}:00, end_date {ends:%Y-%m-%dT%H:%M} "
        f"up to {ends:%Y-%m-%dT%H}:00"
    ) in report.stderr
