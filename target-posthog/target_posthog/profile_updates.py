"""The events that carry a person's or group's properties to PostHog (built by profiles.py).

One `$set` event per person (`$set_once` with `existing_properties: keep`) and one
`$groupidentify` per group, each with a uuid derived from its values, so a re-send after a
crash is the same PostHog event (shared/reference/posthog-capture-api.md sections 2 and 3).
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from target_posthog import exact_numbers
from target_posthog.event_keys import derived_uuid
from target_posthog.groups import GROUP_UPDATE
from target_posthog.persons import PERSON_UPDATE
from target_posthog.profile_state import State

ExistingProperties = Literal["overwrite", "keep"]
OVERWRITE: ExistingProperties = "overwrite"
KEEP: ExistingProperties = "keep"
PERSON, GROUP = "person", "group"
# On every update the target adds (not an event of the export): "person" or "group", so a
# PostHog query can tell them from the history.
UPDATE_MARKER = "amplitude_migration_update"


def _digest(values: dict[str, Any]) -> str:
    return exact_numbers.dumps(values, option=orjson.OPT_SORT_KEYS, default=str).decode()


def person_update(distinct_id: str, state: State, existing: ExistingProperties) -> dict[str, Any]:
    """The `$set` event (`$set_once` when `existing` is keep) of one person's values."""
    values = dict(sorted(state.newest.values.items()))
    # Overwrite: the earliest initial values are ours to correct, so they go in $set too.
    values.update(sorted(state.initial.values.items()))
    operation = "$set_once" if existing == KEEP else "$set"
    return {
        "event": PERSON_UPDATE,
        "distinct_id": distinct_id,
        "timestamp": state.newest_time(),
        "uuid": derived_uuid("person-update", distinct_id, operation, _digest(values)),
        "properties": {
            operation: values,
            UPDATE_MARKER: PERSON,
            "$geoip_disable": True,
            "analytics_source": "amplitude",
        },
    }


def group_update(key: str, state: State) -> dict[str, Any]:
    """The `$groupidentify` event of one group's values (`key`: JSON [type, key])."""
    group_type, group_key = orjson.loads(key)
    values = dict(sorted(state.newest.values.items()))
    return {
        "event": GROUP_UPDATE,
        # The distinct_id of the newest record showing the group: a real person (a made-up
        # id would become a person of its own in PostHog).
        "distinct_id": state.by,
        "timestamp": state.newest_time(),
        "uuid": derived_uuid("group-update", group_type, group_key, _digest(values)),
        "properties": {
            "$group_type": group_type,
            "$group_key": group_key,
            "$group_set": values,
            UPDATE_MARKER: GROUP,
            "$geoip_disable": True,
            "analytics_source": "amplitude",
        },
    }
