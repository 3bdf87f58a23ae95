"""A likely wrong `amplitude_time_zone`, told from the counts themselves.

Amplitude's charts count in the project's time zone (counting-apis.md); the verification moves
their hours to UTC by `amplitude_time_zone` (UTC by default). Set wrong, every hour or day looks
"unexplained" although nothing is lost. If Amplitude's hourly counts, moved a whole number of
hours, equal what the migration read (chart events: person/group update rows aside) in every
hour of a window, while unmoved they do not, the zone is off by that many hours: say so.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping

from target_posthog.ledger_view import LedgerFigures

HOUR = dt.timedelta(hours=1)
MAX_SHIFT = 14  # hours: UTC-12:00 .. UTC+14:00 seen from either side


def chart_hours(ledger: LedgerFigures) -> Counter[dt.datetime]:
    """Records read per UTC event hour that Amplitude's charts count."""
    read: Counter[dt.datetime] = Counter()
    for key, figures in ledger.hours.items():
        moment = dt.datetime.strptime(key, "%Y-%m-%dT%H").replace(tzinfo=dt.UTC)
        read[moment] += figures.read - figures.updates
    return read


def zone_shift(
    chart: Mapping[dt.datetime, int],
    amplitude: Mapping[dt.datetime, int],
    start: dt.datetime,
    end: dt.datetime,
) -> int | None:
    """Hours k (not 0) such that `amplitude`'s count at h equals `chart`'s at h + k for every
    hour both cover in [start, end), with some events among them; None if unmoved fits, or no
    single k does."""

    def fits(k: int) -> bool:
        moment, stop = start + max(k, 0) * HOUR, end + min(k, 0) * HOUR
        seen = False
        while moment < stop:
            expected = chart.get(moment, 0)
            if amplitude.get(moment - k * HOUR, 0) != expected:
                return False
            seen = seen or expected > 0
            moment += HOUR
        return seen

    if fits(0):
        return None
    return next(
        (k for k in sorted(range(-MAX_SHIFT, MAX_SHIFT + 1), key=abs) if k and fits(k)), None
    )


def zone_hint(zone: dt.tzinfo, name: str, shift: int, at: dt.datetime) -> str:
    """The line for the user: how far off, and the UTC offset the buckets fit."""
    assumed = zone.utcoffset(at.replace(tzinfo=None)) or dt.timedelta(0)
    fitting = assumed - shift * HOUR
    minutes = int(fitting.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    offset = f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return (
        f"Amplitude's hourly counts equal the migration's once moved {abs(shift)} h "
        f"{'later' if shift > 0 else 'earlier'}: amplitude_time_zone is {name}, but the project's "
        f"charts seem to count in {offset} around {at:%Y-%m-%d}; set amplitude_time_zone "
        "(TARGET_POSTHOG_AMPLITUDE_TIME_ZONE) to the zone in Amplitude's project settings"
    )
