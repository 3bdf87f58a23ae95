"""Progress a person can read during a migration that may last days.

Every few seconds: events delivered of those received so far (the tap reads a few MB ahead of
what is delivered: the pipes' buffers), aliases and dead letters, the speed counting every event
PostHog took (aliases and person/group updates count against the agreed limit too), how far
delivery is behind reading, from the recent speed, never faster than the limit allows, and where
delivery stands (the bookmark of the last STATE passed on). The whole run's ETA is tap-amplitude's
("read up to ...": it knows the run's range; range_progress.py). And a line at each checkpoint: each
time a STATE is passed on whose bookmark moved past events delivered since the previous one
(tap-amplitude sends one per finished export hour; the target passes at most one a second), so
a throttled migration says which hour it has finished, and hours with nothing in them stay quiet.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Counts:
    """What the run has done so far (all counts since the run started)."""

    received: int  # records read from the tap
    events_sent: int  # export events PostHog confirmed
    aliases_sent: int
    updates_sent: int  # person and group updates
    dead_letters: int

    @property
    def posthog_events(self) -> int:
        """Everything PostHog took: what the speed limit counts."""
        return self.events_sent + self.aliases_sent + self.updates_sent


def bookmarks_text(state: dict | None) -> str | None:
    """The bookmarks of a singer-sdk STATE (``{"bookmarks": {stream: {"replication_key_value":
    ...}}}``) as "stream value, ...", or None when it holds none."""
    if not state:
        return None
    bookmarks = [
        f"{stream} {bookmark['replication_key_value']}"
        for stream, bookmark in sorted(state.get("bookmarks", {}).items())
        if isinstance(bookmark, dict) and bookmark.get("replication_key_value")
    ]
    return ", ".join(bookmarks) or None


class Checkpoints:
    """A line for a STATE passed on that vouches for newly delivered events, at most one
    every `every` seconds: STATEs pass at up to one per confirmed batch (delivery.py), several a
    second on a fast run; a line skipped counts its events into the next."""

    def __init__(self, *, dry_run: bool = False, every: float = 1.0) -> None:
        self._arrived = (
            "written to the payload file or dead-lettered (dry run: nothing sent, no bookmark "
            "moved)"
            if dry_run
            else "in PostHog or dead-lettered"
        )
        self._settled = 0  # events delivered + dead-lettered at the last checkpoint line
        self._where: str | None = None
        self._every = every
        self._said_at: float | None = None  # time.monotonic() of the last line

    def line(self, state: dict, counts: Counts, *, now: float | None = None) -> str | None:
        """The line for this STATE, or None when its bookmark did not move, it vouches for no
        new event (an empty hour), or the last line is less than `every` seconds old."""
        where = bookmarks_text(state)
        settled = counts.events_sent + counts.dead_letters
        if where is None or where == self._where or settled == self._settled:
            return None
        now = time.monotonic() if now is None else now
        if self._said_at is not None and now - self._said_at < self._every:
            return None
        self._said_at = now
        since, self._settled, self._where = settled - self._settled, settled, where
        return (
            f"checkpoint {where}: everything before it is {self._arrived} "
            f"({since:,} events since the last checkpoint; {counts.events_sent:,} delivered of "
            f"{counts.received:,} received so far)"
        )


class Progress:
    """Builds progress lines; the speed is measured between consecutive lines."""

    def __init__(self, events_per_minute: int | None, *, now: float | None = None) -> None:
        self._limit_per_second = events_per_minute / 60 if events_per_minute else None
        self._last: tuple[float, int] | None = None
        self._started = time.monotonic() if now is None else now

    def line(
        self,
        counts: Counts,
        in_flight: int,
        *,
        bookmark: str | None = None,
        now: float | None = None,
    ) -> str:
        now = time.monotonic() if now is None else now
        last_time, last_events = self._last or (self._started, 0)
        self._last = (now, counts.posthog_events)
        speed = (counts.posthog_events - last_events) / max(now - last_time, 1e-9)
        # Received counts the person and group updates the run adds at its end too.
        settled = counts.events_sent + counts.updates_sent + counts.dead_letters
        share = f" ({100 * settled / counts.received:.1f}%)" if counts.received else ""
        return (
            f"{counts.events_sent:,} events delivered of {counts.received:,} received so far"
            f"{share}, {counts.aliases_sent:,} aliases, {counts.dead_letters:,} dead-lettered; "
            f"{speed:,.0f} events/s to PostHog incl. aliases and updates"
            f"{self._limit_text()}; {self._eta(counts.received - settled, speed)}; "
            f"{in_flight} batches in flight; "
            + (f"last checkpoint {bookmark}" if bookmark else "no checkpoint yet this run")
        )

    def _limit_text(self) -> str:
        if self._limit_per_second is None:
            return " (no speed limit)"
        return f" (limit {self._limit_per_second:,.0f}/s)"

    def _eta(self, remaining: int, speed: float) -> str:
        if remaining <= 0:
            return "all received is delivered"
        if speed <= 0:  # PostHog slow or asking to wait: no speed to measure a lag by
            return "nothing delivered in the last seconds (batches waiting on PostHog)"
        rate = speed if self._limit_per_second is None else min(speed, self._limit_per_second)
        return f"delivery {_duration(remaining / rate)} behind reading"


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {seconds:02d} s"
    return f"{seconds} s"
