"""What the migration observed of one person or group, and its stored form in the registry.

A person or group holds its newest value per property (`newest`), its earliest `$initial_*`
values (`initial`), and the distinct_id of its newest showing (`by`: a group update is sent
under it). `State` is one row of the registry's `profiles` table (migration 3 in
registry_schema.py), stored as one JSON text.
"""

from __future__ import annotations

from target_posthog import exact_numbers
from target_posthog.winners import Winners

_TIMESTAMP_WIDTH = 32  # event_keys.parse_time's output: 2024-01-01T00:00:00.000000+00:00


class Observed:
    """What one person or group showed: newest values, earliest `$initial_*`, newest showing."""

    __slots__ = ("by", "by_order", "initial", "newest")

    def __init__(self, by: str) -> None:
        self.newest = Winners()
        self.initial = Winners(earliest=True)
        self.by, self.by_order = by, ""


class State(Observed):
    """A stored profile: what was observed so far, as one JSON text in the registry."""

    __slots__ = ()

    @classmethod
    def load(cls, text: str | None, key: str) -> State:
        state = cls(key)
        if text is not None:
            stored = exact_numbers.loads(text.encode())
            state.newest = Winners.load(stored["set"])
            state.initial = Winners.load(stored["once"], earliest=True)
            state.by_order, state.by = stored["by"]
        return state

    def merge(self, observed: Observed) -> tuple[bool, bool]:
        """Fold observations in; (a value changed, only an order moved)."""
        changed, moved = self.newest.merge(observed.newest)
        changed_initial, moved_initial = self.initial.merge(observed.initial)
        if observed.by_order > self.by_order:
            self.by, self.by_order = observed.by, observed.by_order
            moved = True
        changed = changed or changed_initial
        return changed, (moved or moved_initial) and not changed

    def dump(self) -> str:
        # Amplitude user properties may hold integers wider than 64 bits: stored exactly.
        return exact_numbers.dumps(
            {
                "set": self.newest.dump(),
                "once": self.initial.dump(),
                "by": [self.by_order, self.by],
            },
            default=str,
        ).decode()

    def newest_time(self) -> str:
        """The event time of the newest observation held."""
        return max(self.newest.last, self.initial.last)[:_TIMESTAMP_WIDTH]
