"""How many queries `target-posthog-verify` may send: a range that would spend the APIs'
hourly limits is refused in one line before any query; a long one says how far it is."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from unittest import mock

import pytest
from target_posthog import count_requests
from target_posthog.counts import CountingError
from target_posthog.verify_budget import plan_queries

from tests.verify_harness import Migration

NOW = datetime(2024, 5, 3, 12, tzinfo=UTC)


def test_a_range_of_two_thousand_years_is_refused_before_any_query(
    migrated: Migration,
) -> None:
    """`--start 0001-01-01` alone: about 2,000 Amplitude queries and 739,000 daily buckets.
    It ran, silent, for minutes (and would have spent Amplitude's hourly cost budget)."""
    asked = len(migrated.amplitude.dashboard.requests), len(migrated.posthog.query_api.requests)
    report = migrated.verify("--start", "0001-01-01", now=NOW)
    assert (report.returncode, report.stdout) == (2, "")
    assert report.stderr == (
        "target-posthog-verify: cannot verify: 0001-01-01 00:00 .. 2024-05-02 00:00 UTC "
        "(exclusive) would take 2,025 Amplitude queries (one per 365 days) and 357 PostHog "
        "queries; at most 100 each fit the APIs' hourly limits (PostHog: about 120 queries an "
        "hour per key; Amplitude: a cost budget per project): narrow --start/--end\n"
    )
    now = len(migrated.amplitude.dashboard.requests), len(migrated.posthog.query_api.requests)
    assert now == asked  # not one query


def test_two_years_of_hours_is_refused_and_700_days_are_counted(migrated: Migration) -> None:
    """By hour (and by day outside UTC) Amplitude answers 7 days a query: 735 days are 105."""
    report = migrated.verify("--period", "hour", "--start", "2022-05-01", "--end",
                             "2024-05-05", now=NOW)  # fmt: skip
    assert report.returncode == 2
    assert report.error_lines() == [
        "target-posthog-verify: cannot verify: 2022-05-01 00:00 .. 2024-05-05 00:00 UTC "
        "(exclusive) would take 105 Amplitude queries (one per 7 days of hours) and 3 PostHog "
        "queries; at most 100 each fit the APIs' hourly limits (PostHog: about 120 queries an "
        "hour per key; Amplitude: a cost budget per project): narrow --start/--end"
    ]
    assert len(report.stderr.splitlines()) == 1


def test_a_long_count_says_how_far_it_is_at_most_every_30_seconds(migrated: Migration) -> None:
    """70 days by hour: 10 Amplitude queries. The clock of the progress lines steps 20 s at
    each reading (nothing sleeps): a line after every second query, never two within 30 s."""
    ticks = itertools.count(0.0, 20.0)
    with mock.patch.object(count_requests, "clock", lambda: next(ticks)):
        report = migrated.verify("--period", "hour", "--start", "2024-03-01", "--end",
                                 "2024-05-10", now=NOW)  # fmt: skip
    assert report.returncode == 0, report.stderr
    progress = [line for line in report.stderr.splitlines() if "queries done" in line]
    assert progress == [
        f"target-posthog-verify: Amplitude's Dashboard REST API: {done} of 10 queries done"
        for done in (1, 3, 5, 7, 9)
    ] + ["target-posthog-verify: PostHog's query API: 1 of 3 queries done"]


class _Client:
    """What `plan_queries` asks of a counting client: its queries for the range, and `plan`."""

    def __init__(self, queries: int) -> None:
        self._queries = queries
        self.planned: int | None = None

    def queries(self, start: datetime, end: datetime, *, by_day: bool = True) -> int:
        return self._queries

    def days_per_query(self, *, by_day: bool) -> int:
        return 365

    def plan(self, queries: int) -> None:
        self.planned = queries


def test_the_days_judged_by_hour_count_in_the_limit() -> None:
    """A day within which start_date or end_date falls costs one more Amplitude query (its
    hourly counts): 99 by day and 2 such days are 101, over the limit of 100."""
    start, end = datetime(1925, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC)
    amplitude, posthog = _Client(98), _Client(1)
    plan_queries(amplitude, posthog, start, end, by_day=True, hourly_days=2)  # type: ignore[arg-type]
    assert amplitude.planned == 100
    with pytest.raises(CountingError, match=r"would take 101 Amplitude queries"):
        plan_queries(_Client(99), posthog, start, end, by_day=True, hourly_days=2)  # type: ignore[arg-type]
