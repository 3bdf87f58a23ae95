"""What the mapping kept under another name or replaced visibly: counted by kind for the run's
summary, each kind logged once (naming the record by its uuid, never its values).

`mapping.map_record` names the kinds a record met in `Mapped.notes`; the values themselves are
in the event (documented properties, README mapping table), so nothing changes silently.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

logger = logging.getLogger("target-posthog")

# The kinds, as the summary words them.
CLASHING_EVENT_PROPERTIES = (
    "events whose event_properties named a property the export's own fields map to "
    "(kept in $amplitude_clashing_event_properties)"
)
CLASHING_FIELDS = (
    "events with an export field whose $amplitude_<field> name the target's own property or "
    "another field holds (kept in $amplitude_clashing_fields)"
)
CLASHING_USER_PROPERTIES = (
    "events whose user_properties held a property named like a renamed PostHog instruction "
    "beside it ($amplitude_$set beside $set; kept in the person's "
    "$amplitude_clashing_user_properties)"
)
TIME_OUT_OF_RANGE = (
    "events whose event_time is more than 23 h after the run's start or before 1970 "
    "(the next time field used, $amplitude_timestamp_from)"
)
LONG_OR_NUL_ID = (
    "events with an id longer than 183 characters or holding a NUL, which PostHog would cut "
    "or replace "
    "(sent as <first 100 characters>#repaired-<sha256>)"
)
RESERVED_ID = (
    "events with an id of the form of the target's own ids (amplitude_user:..., "
    "amplitude_device:..., amplitude_group_updates), sent as <id>#repaired-<sha256>"
)


class MappingNotes:
    """Counts of `Mapped.notes` kinds; safe from several threads."""

    def __init__(self) -> None:
        self.by_kind: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, kinds: tuple[str, ...], stream: str, record: dict[str, Any]) -> None:
        with self._lock:
            for kind in kinds:
                if not self.by_kind[kind]:
                    uuid = record.get("uuid")
                    named = f"uuid {uuid[:64]}" if isinstance(uuid, str) else "without a uuid"
                    logger.warning(
                        "%s record %s: one of the %s; further ones are counted in the summary",
                        stream,
                        named,
                        kind,
                    )
                self.by_kind[kind] += 1

    def describe(self) -> str:
        """``", 2 events whose ..., 1 events with ..."``, or "" when none."""
        return "".join(f", {n} {kind}" for kind, n in self.by_kind.most_common())
