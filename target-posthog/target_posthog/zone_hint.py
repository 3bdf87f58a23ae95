"""A likely wrong `amplitude_time_zone`, told from the counts themselves.

Amplitude's charts count in the project's time zone (counting-apis.md); the verification moves
their hours to UTC by `amplitude_time_zone` (UTC by default). Set wrong, every hour or day looks
"unexplained" although nothing is lost. If Amplitude's hourly counts, moved a whole number of
hours, match what the migration read (chart events: person/group update rows aside) hour by
hour in a window, while unmoved they do not, the zone is off by that many hours: say so.

"Match" allows some noise, as a real migration has it: records Amplitude counts that no run
read yet, dead letters Amplitude may not count, records without an event time. An exact match
would miss every real project (it did, with 3 % of lines dead-lettered).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping

from target_posthog.counts import moved
from target_posthog.ledger_view import LedgerFigures

HOUR = dt.timedelta(hours=1)
MAX_SHIFT = 14  # hours: UTC-12:00 .. UTC+14:00 seen from either side


def chart_hours(ledger: LedgerFigures) -> Counter[dt.datetime]:
    """Records read per UTC event hour that Amplitude's charts count."""
    read: Counter[dt.datetime] = Counter()
    for key, figures in ledger.hours.items():
        moment = dt.datetime.strptime(key, "%Y-%m-%dT%H").replace(tzinfo=dt.UTC)
        read[moment] += figures.read - figures.updates - figures.no_event_time
    for chart, delivered in ledger.moved.items():  # counted by Amplitude at their event_time
        moment = dt.datetime.strptime(chart, "%Y-%m-%dT%H").replace(tzinfo=dt.UTC)
        read[moment] += sum(delivered.values())
    return read


NOISE = 0.1  # at most this share of the events compared may differ at the fitting shift


def zone_shift(
    chart: Mapping[dt.datetime, int],
    amplitude: Mapping[dt.datetime, int],
    start: dt.datetime,
    end: dt.datetime,
) -> int | None:
    """Hours k (not 0) such that `amplitude`'s count at h matches `chart`'s at h + k, hour by
    hour within [start, end): the k with the fewest differing events, if they are at most
    `NOISE` of the events compared and at most half the differences unmoved; None if no k
    does (unmoved fits best, or the counts differ for other reasons)."""

    def mismatch(k: int) -> tuple[int, int]:
        """(events that differ, events compared) at shift k, over the hours both cover."""
        moment, stop = moved(start, max(k, 0) * HOUR), moved(end, min(k, 0) * HOUR)
        differ = compared = 0
        while moment < stop:
            expected, counted = chart.get(moment, 0), amplitude.get(moment - k * HOUR, 0)
            differ += abs(counted - expected)
            compared += max(counted, expected)
            moment += HOUR
        return differ, compared

    def rate(k: int) -> float:
        differ, compared = mismatch(k)
        return differ / compared if compared else 1.0

    unmoved = rate(0)
    best = min((k for k in range(-MAX_SHIFT, MAX_SHIFT + 1) if k), key=lambda k: (rate(k), abs(k)))
    if rate(best) <= NOISE and rate(best) * 2 <= unmoved:
        return best
    return None


def zone_hint(zone: dt.tzinfo, name: str, shift: int, at: dt.datetime) -> str:
    """The line for the user: how far off, and the UTC offset the buckets fit."""
    assumed = zone.utcoffset(at.replace(tzinfo=None)) or dt.timedelta(0)
    fitting = assumed - shift * HOUR
    minutes = int(fitting.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    offset = f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return (
        f"Amplitude's hourly counts match the migration's once moved {abs(shift)} h "
        f"{'later' if shift > 0 else 'earlier'}: amplitude_time_zone is {name}, but the project's "
        f"charts seem to count in {offset} around {at:%Y-%m-%d}; set amplitude_time_zone "
        "(TARGET_POSTHOG_AMPLITUDE_TIME_ZONE) to the zone in Amplitude's project settings"
    )
