"""Adaptive export windows: which hour range to ask Amplitude for next.

Pure logic, no I/O, so the sizing rules can be unit-tested on their own. All times are whole
UTC hours; a window is half-open, ``[start, end)``, and the Export API is asked for
``start .. end - 1h`` (it counts both hours inclusively).

Sizing rules (issue 7):
- the first window is ``window_hours`` wide when set, else one day;
- a window that came back empty (404) makes the next one 4x wider: a year of nothing is crossed in
  a handful of requests;
- a window with data sizes the next one from its weight (bytes per hour) toward the target archive
  size, growing at most 8x at a time so a single sparse sample does not leap into a dense range;
- a window too large for Amplitude (400, 504) is split in halves, down to one hour, and until the
  cursor has passed the refused range no window is wider than the half that was tried next (the
  heavy data is in there somewhere; growing back would only be refused again);
- never wider than ``window_hours`` (when set) nor than Amplitude's 365-day limit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

HOUR = dt.timedelta(hours=1)
MAX_WINDOW_HOURS = 365 * 24  # Amplitude refuses wider ranges.
DEFAULT_FIRST_WINDOW_HOURS = 24
EMPTY_GROWTH_FACTOR = 4
MAX_GROWTH_FACTOR = 8


def floor_hour(moment: dt.datetime) -> dt.datetime:
    """The whole UTC hour containing ``moment`` (naive values are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def bookmark_text(hour: dt.datetime) -> str:
    """The one textual form every bookmark takes: RFC 3339, UTC, ``+00:00``, no fraction.

    The SDK compares bookmarks as strings, so they must never mix forms.
    """
    return floor_hour(hour).isoformat()


def api_hour(hour: dt.datetime) -> str:
    """An hour as the Export API's ``start``/``end`` parameters spell it: ``YYYYMMDDTHH``."""
    return hour.strftime("%Y%m%dT%H")


@dataclass(frozen=True)
class Window:
    """A half-open range of whole UTC hours, ``[start, end)``."""

    start: dt.datetime
    end: dt.datetime

    @property
    def hours(self) -> int:
        return int((self.end - self.start) / HOUR)

    @property
    def last_hour(self) -> dt.datetime:
        """The inclusive last hour, as the Export API's ``end`` parameter means it."""
        return self.end - HOUR

    def __str__(self) -> str:
        if self.hours == 1:
            return f"{self.start:%Y-%m-%dT%H}:00Z (1 h)"
        return f"{self.start:%Y-%m-%dT%H}:00Z .. {self.end:%Y-%m-%dT%H}:00Z ({self.hours} h)"


class WindowTooLargeError(Exception):
    """A single hour cannot be split any further, yet Amplitude still refuses it."""


class WindowPlanner:
    """Walks ``[start, end)`` in windows whose width adapts to what the data weighs.

    The caller asks for :meth:`next_window`, tries it, then reports exactly one outcome:
    :meth:`completed` (data or empty) advances past it; :meth:`split` narrows it in place.
    """

    def __init__(
        self,
        start: dt.datetime,
        end: dt.datetime,
        *,
        target_bytes: int,
        max_hours: int | None = None,
    ) -> None:
        if target_bytes <= 0:
            msg = "target_bytes must be positive"
            raise ValueError(msg)
        self.cursor = floor_hour(start)
        self.end = floor_hour(end)
        self.target_bytes = target_bytes
        self.max_hours = min(max_hours or MAX_WINDOW_HOURS, MAX_WINDOW_HOURS)
        self.width = min(max_hours or DEFAULT_FIRST_WINDOW_HOURS, self.max_hours)
        # After a refusal: no wider than refused_width until the cursor passes refused_end.
        self.refused_end: dt.datetime | None = None
        self.refused_width = self.max_hours

    @property
    def done(self) -> bool:
        return self.cursor >= self.end

    def next_window(self) -> Window | None:
        """The next range to ask for, or None when the whole range has been walked."""
        if self.done:
            return None
        end = min(self.cursor + self.width * HOUR, self.end)
        return Window(self.cursor, end)

    def completed(self, window: Window, archive_bytes: int) -> None:
        """``window`` was read in full (``archive_bytes`` = 0 when empty); move past it."""
        self._expect_current(window)
        self.cursor = window.end
        if archive_bytes <= 0:
            wanted = window.hours * EMPTY_GROWTH_FACTOR
        else:
            bytes_per_hour = archive_bytes / window.hours
            wanted = int(self.target_bytes / bytes_per_hour)
            wanted = min(wanted, window.hours * MAX_GROWTH_FACTOR)
        if self.refused_end is not None and self.cursor < self.refused_end:
            wanted = min(wanted, self.refused_width)
        else:
            self.refused_end = None
        self.width = max(1, min(wanted, self.max_hours))

    def split(self, window: Window) -> Window:
        """``window`` is too large for Amplitude: retry its first half next.

        Raises:
            WindowTooLargeError: the window is already a single hour.
        """
        self._expect_current(window)
        if window.hours <= 1:
            raise WindowTooLargeError(str(window))
        self.width = window.hours // 2
        self.refused_end, self.refused_width = window.end, self.width
        next_window = self.next_window()
        assert next_window is not None  # the cursor did not move, so work remains
        return next_window

    def _expect_current(self, window: Window) -> None:
        if window.start != self.cursor:
            msg = f"window {window} is not the current one (cursor at {self.cursor})"
            raise ValueError(msg)
