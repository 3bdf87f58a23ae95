"""`target-posthog-verify` at the far ends of the dates it accepts: year 1 and the last days
before `LAST_END`, in Amplitude projects west and east of UTC, by day and by hour. Each gives a
report or one clear line (exit 2); an OverflowError traceback was what users saw."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from target_posthog.zone_hint import zone_shift

from tests.verify_harness import Migration

HOUR = timedelta(hours=1)
NOW = datetime(2024, 5, 3, 12, tzinfo=UTC)
FAR = [  # (--start, --end): every one was accepted by the arguments' checks
    ("0001-01-01", "0001-01-03"),
    ("0001-01-01", "0001-01-01T03:00"),
    ("9998-12-29", "9999-01-02"),
    ("9999-12-28", "9999-12-29"),
    ("9999-12-29", "9999-12-30"),
    ("9999-12-29T00:00", "9999-12-29T02:00"),
]
ZONES = ["UTC", "Etc/GMT+12", "Etc/GMT-14", "America/Los_Angeles", "Asia/Tokyo"]


@pytest.mark.parametrize("period", ["day", "hour"])
def test_far_dates_give_a_report_or_one_line(migrated: Migration, period: str) -> None:
    failed = []
    outcomes: dict[tuple[str, str, str], tuple[int, str]] = {}
    for start, end in FAR:
        for zone in ZONES:
            report = migrated.verify("--period", period, "--start", start, "--end", end,
                                     "--settle-hours", "0", now=NOW,
                                     amplitude_time_zone=zone)  # fmt: skip
            lines = report.stderr.splitlines()
            # A report (exit 0: nothing is held that far out), or exit 2 with its one line last.
            good = (report.returncode == 0 and report.periods()) or (
                report.returncode == 2 and report.error_lines() == lines[-1:]
            )
            outcomes[start, end, zone] = (report.returncode, lines[-1])
            if not good:
                failed.append((start, end, zone, report.returncode, lines[-1:]))
    assert failed == [], "\n".join(map(str, failed))
    # The finding's case: year 1 by hour in Los Angeles (local mean time, UTC-07:53).
    assert outcomes["0001-01-01", "0001-01-01T03:00", "America/Los_Angeles"] == (2, (
        "target-posthog-verify: cannot verify: the Amplitude project's time zone "
        "America/Los_Angeles is UTC-07:53 on 0001-01-01: its hourly buckets do not line up "
        "with UTC hours, so they cannot be compared hour by hour with the migration"))  # fmt: skip


def test_a_wrong_zone_is_still_found_in_year_1() -> None:
    """The window of hours compared at each shift (up to 14 h either way) reached before year
    1: an OverflowError traceback where a report had unexplained periods."""
    start, end = datetime(1, 1, 1, tzinfo=UTC), datetime(1, 1, 1, 6, tzinfo=UTC)
    chart = {start + HOUR: 40, start + 2 * HOUR: 5}
    amplitude = {moment + 2 * HOUR: count for moment, count in chart.items()}
    assert zone_shift(chart, amplitude, start, end) == -2
