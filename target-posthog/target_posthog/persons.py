"""Person properties: Amplitude's `user_properties` as newest-wins and earliest-wins values.

PostHog reads a few property names on any event as instructions to change the person
(`$set`, `$set_once`, `$unset`: shared/reference/posthog-capture-api.md section 3). Only the
target decides person updates (profiles.py: newest by event time), so such a key found inside
an export's `event_properties` or `user_properties` is renamed, never dropped:
`$set` -> `$amplitude_$set` (the record fields the target keeps are `$amplitude_<field>`
without the field's `$`, so the two never meet).
"""

from __future__ import annotations

from typing import Any

from target_posthog.fields import RAW_PREFIX, NameCache

PERSON_UPDATE = "$set"  # the event Amplitude's `$identify` rows become
PERSON_OPERATIONS = ("$set", "$set_once", "$unset")
EMPTY = "EMPTY"  # Amplitude's value of an `initial_*` property that had none


def neutralised(properties: dict[str, Any]) -> dict[str, Any]:
    """`properties` with PostHog's person operations renamed (`$set` -> `$amplitude_$set`);
    the same dict when it holds none (nearly always)."""
    if "$set" not in properties and "$set_once" not in properties and "$unset" not in properties:
        return properties
    return {
        (RAW_PREFIX + key if key in PERSON_OPERATIONS else key): value
        for key, value in properties.items()
    }


def person_values(user_properties: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(newest-wins values, earliest-wins values) of one record's `user_properties`.

    Amplitude's `initial_*` properties (initial_utm_source, initial_referrer, ...) are
    first-touch values: the earliest event's, under their own name and under PostHog's
    `$initial_*` (PostHog's importer sends those with `$set_once`). The `$initial_*` copy
    leaves out `EMPTY` (Amplitude's "none"; PostHog's importer skips it too) and null; the
    plain name keeps exactly what Amplitude shows.
    """
    person = neutralised(user_properties)
    if person is user_properties:
        person = dict(user_properties)
    names = _INITIAL_NAMES.names
    try:
        found = [key for key in person if names[key]]
    except KeyError:
        found = [key for key in person if _INITIAL_NAMES.learn(key)]
    if not found:
        return person, {}
    initial: dict[str, Any] = {}
    for key in found:
        value = person.pop(key)
        initial[key] = value
        if value != EMPTY and value is not None:
            initial[names.get(key) or _INITIAL_NAMES.learn(key)] = value
    return person, initial


_INITIAL_NAMES = NameCache(lambda key: f"$initial_{key[8:]}" if key.startswith("initial_") else "")
