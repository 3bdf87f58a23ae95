"""What the migration observed of one person or group, and its stored form in the registry.

A person or group holds:
- `snapshot`: the newest whole snapshot of its Amplitude properties by (event time, uuid): an
  Amplitude event's `user_properties` (`group_properties[type][key]` for a group) is every
  property the user (group) had at that time, so the newest one is what Amplitude shows today.
  `snapshot.seen` keeps every name any snapshot held: those the newest lacks were removed in
  Amplitude, and are removed in PostHog too (`removed`). An empty or missing snapshot shows
  nothing (an event sent without user context) and is not one.
- `newest`: the newest value per name of the context the target adds to a person (location,
  OS, browser, device type, page), which is per event, not a snapshot; registries written
  before snapshots existed hold their user properties here too.
- `initial`: the earliest value per name of `initial_*` / `$initial_*` (first-touch values:
  never removed, whatever later snapshots hold);
- `by`: the distinct_id of its newest showing by a person (a group update is sent under it).

`State` is one row of the registry's `profiles` table (migration 3 in registry_schema.py),
stored as one JSON text.
"""

from __future__ import annotations

from typing import Any

from singer_plugin_common import exact_json

from target_posthog import exact_numbers
from target_posthog.winners import Winners

_TIMESTAMP_WIDTH = 32  # event_keys.parse_time's output: 2024-01-01T00:00:00.000000+00:00


class Snapshot:
    """The newest whole snapshot by order, and every name a snapshot held (`seen`)."""

    __slots__ = ("order", "seen", "values")

    def __init__(self) -> None:
        self.order = ""
        self.values: dict[str, Any] = {}
        self.seen: set[str] = set()  # names of older snapshots (the newest's may be missing)

    def add(self, order: str, values: dict[str, Any]) -> bool:
        """One snapshot seen at `order`; True when it is the newest now."""
        if order > self.order:
            self.seen.update(self.values)
            self.order, self.values = order, values
            return True
        self.seen.update(values)
        return False

    def merge(self, other: Snapshot) -> tuple[bool, bool]:
        """Fold `other` in; (the values or the removed names changed, only the order moved).

        An older snapshot can change what is removed: a device's anonymous properties folded
        into its user in a later run (profiles.fold_devices) are names the user's newest
        snapshot lacks, so the user's next update unsets them."""
        removed = len(self.seen.difference(self.values))
        self.seen |= other.seen
        newer = other.order > self.order
        if newer:
            changed = other.values != self.values
            self.seen.update(self.values)
            self.order, self.values = other.order, other.values
        else:
            changed = False
            self.seen.update(other.values)
        if not changed:
            changed = len(self.seen.difference(self.values)) != removed
        return changed, newer and not changed

    def removed(self) -> list[str]:
        """The names older snapshots held and the newest does not, sorted."""
        return sorted(self.seen.difference(self.values))

    def dump(self) -> list[Any]:
        return [self.order, self.values, sorted(self.seen.difference(self.values))]

    @classmethod
    def load(cls, stored: list[Any]) -> Snapshot:
        snapshot = cls()
        snapshot.order, snapshot.values, seen = stored
        snapshot.seen = set(seen)
        return snapshot


class Observed:
    """What one person or group showed (see the module docstring)."""

    __slots__ = ("by", "by_order", "initial", "newest", "snapshot")

    def __init__(self, by: str) -> None:
        self.newest = Winners()
        self.initial = Winners(earliest=True)
        self.snapshot = Snapshot()
        self.by, self.by_order = by, ""


class State(Observed):
    """A stored profile: what was observed so far, as one JSON text in the registry.

    `live` (persons, `existing_properties: keep` only): the names of the properties the
    PostHog person held before the migration's first update of it (person_reader.py), which
    the migration never changes; None until read.
    """

    __slots__ = ("live",)

    def __init__(self, by: str) -> None:
        super().__init__(by)
        self.live: list[str] | None = None

    @classmethod
    def load(cls, text: str | None, key: str) -> State:
        state = cls(key)
        if text is not None:
            stored = exact_numbers.loads(text.encode())
            state.newest = Winners.load(stored["set"])
            state.initial = Winners.load(stored["once"], earliest=True)
            state.by_order, state.by = stored["by"]
            snapshot = stored.get("snapshot")  # absent in rows written before snapshots
            if snapshot is not None:
                state.snapshot = Snapshot.load(snapshot)
            state.live = stored.get("live")
        return state

    def merge(self, observed: Observed) -> tuple[bool, bool]:
        """Fold observations in; (a value changed, only an order moved)."""
        changed, moved = self.newest.merge(observed.newest)
        changed_initial, moved_initial = self.initial.merge(observed.initial)
        changed_snapshot, moved_snapshot = self.snapshot.merge(observed.snapshot)
        if observed.by_order > self.by_order:
            self.by, self.by_order = observed.by, observed.by_order
            moved = True
        changed = changed or changed_initial or changed_snapshot
        return changed, (moved or moved_initial or moved_snapshot) and not changed

    def dump(self) -> str:
        # Amplitude user properties may hold integers wider than 64 bits: stored exactly.
        stored: dict[str, Any] = {
            "set": self.newest.dump(),
            "once": self.initial.dump(),
            "snapshot": self.snapshot.dump(),
            "by": [self.by_order, self.by],
        }
        if self.live is not None:
            stored["live"] = self.live
        return exact_json.dumps(stored, default=str).decode()

    def values(self) -> dict[str, Any]:
        """The properties to set, sorted by name: context, overlaid by the newest snapshot."""
        values = dict(self.newest.values)
        values.update(self.snapshot.values)
        return dict(sorted(values.items()))

    def newest_time(self) -> str:
        """The event time of the newest observation held."""
        return max(self.newest.last, self.initial.last, self.snapshot.order)[:_TIMESTAMP_WIDTH]
