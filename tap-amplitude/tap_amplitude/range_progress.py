"""Where a run stands in its range of hours, for a person watching a migration that lasts days.

The tap reads only as fast as the target delivers (a full pipe blocks its writes; Meltano's and
the pipes' buffers hold a few MB), so the share of the range read, and the pace of this run in
hours of history per hour, give the whole run's ETA. It is by hours of history, not by events:
busy months take longer than quiet ones. target-posthog's own lines say what is delivered.
"""

from __future__ import annotations

import datetime as dt
import time

PROGRESS_SECONDS = 30.0  # at most one line this often (hours can finish many times a second)


class RangeProgress:
    """Builds the progress line for a run over ``[start, end)`` (hours, UTC)."""

    def __init__(
        self,
        start: dt.datetime,
        end: dt.datetime,
        *,
        every: float = PROGRESS_SECONDS,
        now: float | None = None,
    ) -> None:
        self._start, self._end, self._every = start, end, every
        self._started = time.monotonic() if now is None else now
        self._last_said = self._started

    def line(self, read_up_to: dt.datetime, events: int, *, now: float | None = None) -> str | None:
        """The line for a run that has read every record before `read_up_to` (`events` of
        them), or None when the last line is less than `every` seconds old."""
        now = time.monotonic() if now is None else now
        if now - self._last_said < self._every:
            return None
        self._last_said = now
        total = (self._end - self._start).total_seconds()
        done = (read_up_to - self._start).total_seconds()
        share = 100 * done / total if total > 0 else 100.0
        # The whole range's events, extrapolated once a share worth the name is read.
        expected = (
            f" (about {events * total / done:,.0f} in the whole range at this density)"
            if 0.01 * total <= done < total
            else ""
        )
        return (
            f"read up to {_hour(read_up_to)}: {share:.1f}% of this run's range "
            f"({_hour(self._start)} .. {_hour(self._end)}), {events:,} events{expected}; "
            f"{self._eta(done, total - done, now - self._started)}"
        )

    @staticmethod
    def _eta(done: float, remaining: float, elapsed: float) -> str:
        if remaining <= 0:
            return "all of the range read"
        if done <= 0 or elapsed <= 0:
            return "ETA once the first hour is read"
        pace = done / elapsed  # seconds of history per second of this run
        return (
            f"at this run's pace ({pace / 60:,.1f} hours of history a minute) the rest takes "
            f"{_duration(remaining / pace)} (by hours of history, not events)"
        )


def _hour(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%MZ")


def _duration(seconds: float) -> str:
    """An estimate in words: "about 1 h 52 min", or "less than a minute"."""
    minutes = round(seconds / 60)
    if minutes < 1:
        return "less than a minute"
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"about {days} d {hours} h"
    return f"about {hours} h {minutes:02d} min" if hours else f"about {minutes} min"
