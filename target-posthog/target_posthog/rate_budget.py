"""PostHog's agreed speed, shared by every run that uses the same registry.

PostHog agrees one speed for a migration (events per minute), however many jobs deliver it.
Parallel range jobs (several `meltano run`s over disjoint date ranges, one registry) each set
`max_events_per_minute` to that agreed total, and every batch reserves its time slot in the
registry's `rate_slots` row: the slots of all runs follow one another, so together they never
go faster than the agreed speed, and a run alone goes at all of it. One statement reserves a
slot (`UPDATE ... RETURNING`), atomic on SQLite and PostgreSQL alike.

Slots are wall-clock seconds (time.time()): runs on several machines sharing a PostgreSQL
registry need clocks kept in step (NTP), as any distributed job does; a slot further ahead than
`_MAX_AHEAD_S` (a clock that jumped back, a crashed run's stale reservation) is ignored.
"""

from __future__ import annotations

import threading
import time

from target_posthog.delivery import Throttle
from target_posthog.registry_store import Database

_BUDGET = "posthog"  # one row: the registry serves one PostHog project
_MAX_AHEAD_S = 600.0

_RESERVE = (
    "UPDATE rate_slots SET next_slot = "
    "(CASE WHEN next_slot > ? AND next_slot < ? THEN next_slot ELSE ? END) + ? "
    "WHERE name = ? RETURNING next_slot"
)


class SharedThrottle(Throttle):
    """A `Throttle` whose slots are shared through the registry with every other run."""

    def __init__(
        self, events_per_minute: int | None, stopping: threading.Event, database: Database
    ) -> None:
        super().__init__(events_per_minute, stopping)
        self._database = database
        if self.per_second is not None:
            with database.translating("could not be written"), database.transaction() as tx:
                tx.execute(
                    "INSERT INTO rate_slots VALUES (?, 0) ON CONFLICT (name) DO NOTHING",
                    (_BUDGET,),
                )

    def wait(self, events: int) -> None:
        """Sleep until this batch's slot of the shared budget starts (or the run stops)."""
        if self.per_second is not None:
            self.sleep_until(self.reserve(events))

    def reserve(self, events: int) -> float:
        """Take the next `events / rate` seconds of the shared budget; returns when they start
        (epoch seconds). Raises RegistryError if the registry cannot be written."""
        assert self.per_second is not None
        cost = events / self.per_second
        now = time.time()
        database = self._database
        with database.translating("could not be written"), database.transaction() as tx:
            (end,) = tx.fetchone(_RESERVE, (now, now + _MAX_AHEAD_S, now, cost, _BUDGET))
        return float(end) - cost

    def sleep_until(self, start: float) -> None:
        delay = start - time.time()
        if delay > 0:
            self._stopping.wait(delay)
