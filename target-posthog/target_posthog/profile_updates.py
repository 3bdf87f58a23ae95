"""The events that carry a person's or group's properties to PostHog (built by profiles.py).

One `$set` event per person (`$set_once` with `existing_properties: keep`) and one
`$groupidentify` per group, each with a uuid derived from its values, so a re-send after a
crash is the same PostHog event (shared/reference/posthog-capture-api.md sections 2 and 3).
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from singer_plugin_common import exact_json

from target_posthog.deadletter import DeadLetters
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
# The distinct_id of a group update when no person of the migration showed the group (only
# `$groupidentify` rows without ids did): PostHog creates a person for the distinct_id of
# every `$groupidentify` and drops a personless one (groups.PERSONLESS_GROUP_ROW), so all such
# updates share this one person, instead of posthog-python's one `$<type>_<key>` per group.
GROUP_UPDATES_DISTINCT_ID = "amplitude_group_updates"


# PostHog refuses a person update whose result holds more than about 640 KB of properties
# (`check_properties_size`, ingestion warning `person_properties_size_violation`, not retried):
# the whole update is lost (shared/reference/posthog-capture-api.md section 3).
PERSON_PROPERTIES_LIMIT = 640 * 1024
# What one update may carry (its properties' JSON bytes): the rest of the limit is left for
# the properties PostHog adds itself and a project's live ones.
PERSON_PROPERTIES_BUDGET = 512 * 1024


def _digest(*parts: object) -> str:
    return exact_json.dumps(parts, option=orjson.OPT_SORT_KEYS, default=str).decode()


def fit_person_properties(values: dict[str, Any]) -> dict[str, Any]:
    """Take the largest properties out of `values` until its JSON fits
    `PERSON_PROPERTIES_BUDGET`; returns those taken out (nearly always none)."""
    if len(_digest(values)) <= PERSON_PROPERTIES_BUDGET:
        return {}
    by_size = sorted(values, key=lambda name: len(_digest({name: values[name]})), reverse=True)
    set_aside: dict[str, Any] = {}
    for name in by_size:
        set_aside[name] = values.pop(name)
        if len(_digest(values)) <= PERSON_PROPERTIES_BUDGET:
            break
    return set_aside


def set_aside_property(
    dead_letters: DeadLetters | None, distinct_id: str, name: str, value: Any
) -> None:
    """A property too large for PostHog's person (`fit_person_properties`), to the
    dead-letter file: counted there, one log line per run."""
    if dead_letters is None:
        return
    size = len(exact_json.dumps(value, default=str))
    dead_letters.add_record(
        "person_properties",
        f"person property {name!r} of {distinct_id!r} is {size} bytes: PostHog keeps at "
        f"most about {PERSON_PROPERTIES_LIMIT // 1024} KB of properties per person and "
        "refuses the whole update beyond; set aside, the rest of the update sent",
        {"distinct_id": distinct_id, "property": name, "value": value},
    )


def person_update(
    distinct_id: str, state: State, existing: ExistingProperties, sent_version: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `$set` event (`$set_once` when `existing` is keep) of one person's values, and the
    properties set aside because the update would not fit PostHog's size limit
    (`fit_person_properties`; with overwrite they are unset, so no older value stays).

    `$unset` names the user properties Amplitude no longer shows (older snapshots held them,
    the newest does not). With `existing_properties: keep`, the properties the person held
    before the migration (`state.live`) are left out of both, and the rest is the migration's
    own (`$set`, `$unset`); while `state.live` is unknown, values go in `$set_once` and nothing
    is unset. The uuid is derived from
    the values and the profile's `sent_version` (its version when PostHog last confirmed an
    update of it; 0 before the first): a re-send of the same update is the same event, a later
    update is a new one even when its values equal an earlier one's (A, then B, then A again
    must not be deduplicated into B: each confirmation moves `sent_version` up), and two runs
    over the same input and registry (a dry run twice) give the same.
    """
    values = state.values()
    # Overwrite: the earliest initial values are ours to correct, so they go in $set too.
    values.update(sorted(state.initial.values.items()))
    live = state.live
    if existing == KEEP and live is not None:  # keep, knowing what PostHog held before
        for name in live:
            values.pop(name, None)
    set_aside = fit_person_properties(values)
    # keep without knowing what PostHog held: values may only fill what is missing.
    fill_only = existing == KEEP and live is None
    operation = "$set_once" if fill_only else "$set"
    properties: dict[str, Any] = {operation: values}
    removed = [name for name in state.snapshot.removed() if name not in values]
    removed = sorted({*removed, *set_aside}.difference(live or ()))
    if removed and not fill_only:
        properties["$unset"] = removed
    properties.update(
        {UPDATE_MARKER: PERSON, "$geoip_disable": True, "analytics_source": "amplitude"}
    )
    event = {
        "event": PERSON_UPDATE,
        "distinct_id": distinct_id,
        "timestamp": state.newest_time(),
        "uuid": derived_uuid(
            "person-update", distinct_id, operation, _digest(values, removed), str(sent_version)
        ),
        "properties": properties,
    }
    return event, set_aside


def group_update(
    key: str, state: State, existing: ExistingProperties, sent_version: int
) -> dict[str, Any]:
    """The `$groupidentify` event of one group's values (`key`: JSON [type, key]).

    PostHog's group update reads `$group_set` only (its ingestion merges `$group_set` into the
    group; there is no `$group_unset` there, though PostHog's Amplitude importer sends one), so
    a property Amplitude no longer shows is set to null: the nearest PostHog has to removed.
    With keep, the properties the group held before the migration (`state.live`, known: the
    caller withholds the update otherwise) are left out. The uuid follows `person_update`.
    """
    group_type, group_key = orjson.loads(key)
    by = state.by
    # Nobody showed it: `by` is still the row's key (State.load), or (registries of older
    # versions) posthog-python's phantom `$<type>_<key>`.
    if by in ("", key, f"${group_type}_{group_key}"):
        by = GROUP_UPDATES_DISTINCT_ID
    values = state.values()
    for name in state.snapshot.removed():
        values.setdefault(name, None)
    if existing == KEEP:  # the properties the group held before the migration: never changed
        for name in state.live or ():
            values.pop(name, None)
    return {
        "event": GROUP_UPDATE,
        # The distinct_id of the newest record showing the group: a real person (a made-up
        # id would become a person of its own in PostHog).
        "distinct_id": by,
        "timestamp": state.newest_time(),
        "uuid": derived_uuid(
            "group-update", group_type, group_key, _digest(values), str(sent_version)
        ),
        "properties": {
            "$group_type": group_type,
            "$group_key": group_key,
            "$group_set": values,
            UPDATE_MARKER: GROUP,
            "$geoip_disable": True,
            "analytics_source": "amplitude",
        },
    }
