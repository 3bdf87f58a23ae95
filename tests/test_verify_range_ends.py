"""`target-posthog-verify`'s labels once end_date has passed: they name every possibility the
counts leave open (Amplitude counts an event by its time, however late it was uploaded, so any
period's events may have been uploaded after end_date). On a fixed clock."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

from tests.testbed.events import ExportSpec
from tests.testbed.store import ExportStore
from tests.verify_harness import PARALLEL_NOW, Migration, unread_by_hour


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
