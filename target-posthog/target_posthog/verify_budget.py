"""How many queries a report takes, checked before the first one is sent.

Both counting APIs limit queries per hour (shared/reference/counting-apis.md): PostHog's HogQL
about 120 an hour per personal API key, Amplitude's Dashboard REST API an hourly cost budget
per project that grows with the days asked (its number is not given there). A report takes one
Amplitude query per 7 days of hours (per 365 days of a UTC project's days) and one PostHog
query per 50,000 hours, plus two for the events dated outside the report. `MAX_QUERIES` per API
stays under PostHog's 120 with room for the hint and a second try, and keeps Amplitude's side to
at most 700 days of hours (100 years of days). A range that would take more (a `--start` of
0001-01-01: about 2,000 Amplitude queries) would spend the hour's budget of the project or the
key and stop halfway: it is refused in one line before any query.
"""

from __future__ import annotations

import datetime as dt

from target_posthog.count_requests import CountingError
from target_posthog.counts import AmplitudeCounts, PostHogCounts, day_text

MAX_QUERIES = 100  # per API and report; see the module's docstring for where it comes from
OUTSIDE_QUERIES = 2  # PostHog: the events dated before the report, and after it


def plan_queries(
    amplitude: AmplitudeCounts,
    posthog: PostHogCounts,
    start: dt.datetime,
    end: dt.datetime,
    *,
    by_day: bool,
    hourly_days: int = 0,
) -> None:
    """Tell each client how many queries the report takes (for its progress lines), or
    CountingError (one line: the range, the queries, what to do) if more than `MAX_QUERIES`.
    `hourly_days`: days of a daily report judged by hour, one more Amplitude query each."""
    amplitude_queries = amplitude.queries(start, end, by_day=by_day) + hourly_days
    posthog_queries = posthog.queries(start, end) + OUTSIDE_QUERIES
    if max(amplitude_queries, posthog_queries) > MAX_QUERIES:
        days = amplitude.days_per_query(by_day=by_day)
        span = "7 days of hours" if days == 7 else f"{days} days"
        raise CountingError(
            f"{_range_text(start, end)} would take {amplitude_queries:,} Amplitude queries (one "
            f"per {span}) and {posthog_queries:,} PostHog queries; at most {MAX_QUERIES} each "
            "fit the APIs' hourly limits (PostHog: about 120 queries an hour per key; Amplitude: "
            "a cost budget per project): narrow --start/--end"
        )
    amplitude.plan(amplitude_queries)
    posthog.plan(posthog_queries)


def _range_text(start: dt.datetime, end: dt.datetime) -> str:
    return f"{day_text(start)} {start:%H:%M} .. {day_text(end)} {end:%H:%M} UTC (exclusive)"
