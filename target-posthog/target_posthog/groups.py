"""Groups: `$groups` on events, and Amplitude's `$groupidentify` rows as PostHog group updates.

PostHog sets a group's properties with a `$groupidentify` event carrying `$group_type`,
`$group_key` and `$group_set` (shared/reference/posthog-capture-api.md, section 3).
"""

from __future__ import annotations

from typing import Any

from target_posthog.event_keys import derived_uuid
from target_posthog.fields import RAW_PREFIX, UnmappableError, first, object_field

GROUP_UPDATE = "$groupidentify"
# A `$groupidentify` row with no usable user_id or device_id names no person, yet PostHog
# creates a person for the distinct_id of every `$groupidentify` (posthog-python's
# `$<type>_<key>` gives one phantom person per group: PostHog issue 7921), and drops a
# personless one (`$process_person_profile: false`: shared/reference/posthog-capture-api.md
# section 3). So such a row is kept under this name, personless (no person), with `$groups`
# naming its group; its properties reach the group through the group update
# (profiles.py), sent under a person that showed the group.
PERSONLESS_GROUP_ROW = RAW_PREFIX + GROUP_UPDATE


def groups_property(groups: dict[str, Any]) -> dict[str, str]:
    """`$groups`: {group type: its first key} (PostHog holds one key per type on an event)."""
    return {
        str(kind): str(key) for kind, keys in groups.items() if (key := first(keys)) is not None
    }


# (group type, group key, properties) seen on one record
GroupObservation = tuple[str, str, dict[str, Any]]


def group_observations(group_properties: object) -> list[GroupObservation]:
    """Amplitude's `group_properties` ({type: {key: {property: value}}}) as observations.

    Parts that are not objects are left out here (the record keeps them in
    `$amplitude_group_properties`); `group_updates` refuses them for `$groupidentify` rows.
    """
    if not isinstance(group_properties, dict):
        return []
    return [
        (str(kind), str(key), values)
        for kind, by_key in group_properties.items()
        if isinstance(by_key, dict)
        for key, values in by_key.items()
        if isinstance(values, dict) and values
    ]


def group_updates(
    record: dict[str, Any],
    distinct_id: str | None,
    timestamp: str,
    event_uuid: str,
    groups: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[GroupObservation]]:
    """A `$groupidentify` row: one `$groupidentify` event per group it names (a personless
    `PERSONLESS_GROUP_ROW` when `distinct_id` is None), and its properties.

    The events register the groups and keep the row in PostHog; their `$group_set` is empty
    because PostHog applies `$group_set` in ingestion order: the properties reach the group
    through `ledger.PropertyLedger` (newest event time wins), and stay on the event as
    `$amplitude_group_properties`.
    """
    group_properties = object_field(record, "group_properties")
    updates: list[GroupObservation] = []
    for kind, by_key in group_properties.items():
        if not isinstance(by_key, dict):
            raise UnmappableError("group_properties is not an object of objects")
        for key, values in by_key.items():
            if not isinstance(values, dict):
                raise UnmappableError("group_properties is not an object of objects")
            updates.append((str(kind), str(key), values))
    if not updates:  # a group named without properties still registers the group
        for kind, keys in groups.items():
            updates.extend(
                (str(kind), str(key), {})
                for key in (keys if isinstance(keys, list) else [keys])
                if key is not None
            )
    if not updates:
        raise UnmappableError("$groupidentify row names no group")
    events = []
    for kind, key, values in updates:
        uuid_ = event_uuid if len(updates) == 1 else derived_uuid("group", event_uuid, kind, key)
        properties: dict[str, Any] = {"$group_type": kind, "$group_key": key, "$group_set": {}}
        if values:
            properties[RAW_PREFIX + "group_properties"] = values
        properties[RAW_PREFIX + "uuid"] = record.get("uuid")
        if distinct_id is None:  # no person: kept personless (see PERSONLESS_GROUP_ROW)
            properties[RAW_PREFIX + "event_type"] = GROUP_UPDATE
            properties["$groups"] = {kind: key}
            properties["$process_person_profile"] = False
        properties["$geoip_disable"] = True
        properties["analytics_source"] = "amplitude"
        events.append(
            {
                "event": GROUP_UPDATE if distinct_id is not None else PERSONLESS_GROUP_ROW,
                # posthog-python's group_identify names the group so when there is no person
                # (personless here: it creates none).
                "distinct_id": distinct_id or f"${kind}_{key}",
                "timestamp": timestamp,
                "uuid": uuid_,
                "properties": properties,
            }
        )
    return events, [update for update in updates if update[2]]
