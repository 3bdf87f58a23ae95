"""`target-posthog-verify` and Amplitude's project time zone: its hours lined up with UTC, a
wrong zone hinted, DST changes and half-hour offsets."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from target_posthog.client import RetryPolicy
from target_posthog.counts import AmplitudeCounts

from tests.pipeline_harness import (
    AMPLITUDE_KEY,
    AMPLITUDE_SECRET,
    build_drill_store,
)
from tests.testbed.amplitude import AmplitudeStandIn
from tests.testbed.dashboard import NOT_IN_CHARTS
from tests.testbed.events import ExportSpec
from tests.testbed.store import ExportStore
from tests.verify_harness import Migration


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
