"""Person properties: Amplitude's `user_properties` as newest-wins and earliest-wins values.

PostHog reads a few property names on any event as instructions (`$set`, `$set_once`,
`$unset` change the person; `$process_person_profile`, `$groups`, `$cookieless_mode` change
how the event is processed: `POSTHOG_INSTRUCTIONS`). Only the target decides person updates
(profiles.py: newest by event time) and groups, so such a key found inside an export's
`event_properties` or `user_properties` is renamed, never dropped: `$set` ->
`$amplitude_$set` (the record fields the target keeps are `$amplitude_<field>`
without the field's `$`, so the two never meet).
"""

from __future__ import annotations

from typing import Any

from target_posthog.fields import RAW_PREFIX, NameCache

PERSON_UPDATE = "$set"  # the event Amplitude's `$identify` rows become
PERSON_OPERATIONS = ("$set", "$set_once", "$unset")
# Event properties PostHog obeys rather than stores as data: the person operations, and
# `$process_person_profile` (false: no person, and merges and group updates dropped),
# `$groups` (the groups the event counts for; the target sets it from the record's `groups`)
# and `$cookieless_mode` (capture replaces the distinct_id) (shared/reference/
# posthog-capture-api.md section 3; PostHog's capture `RawEvent`).
POSTHOG_INSTRUCTIONS = frozenset(
    (*PERSON_OPERATIONS, "$process_person_profile", "$groups", "$cookieless_mode")
)
# Person property holding the user properties a renamed instruction displaced {name: value}.
CLASHING_USER_PROPERTIES = RAW_PREFIX + "clashing_user_properties"
EMPTY = "EMPTY"  # Amplitude's value of an `initial_*` property that had none


def neutralised(properties: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(`properties` with PostHog's instructions renamed (`$set` -> `$amplitude_$set`,
    `$groups` -> `$amplitude_$groups`, ...: `POSTHOG_INSTRUCTIONS`), {name: value} of the keys
    a renamed one displaced). The renamed instruction takes its new name; a key of that very name
    beside it (`$amplitude_$set` next to `$set`) is displaced, whatever the order. The same
    dict and {} when it holds no instruction (nearly always)."""
    if properties.keys().isdisjoint(POSTHOG_INSTRUCTIONS):
        return properties, {}
    renamed: dict[str, Any] = {}
    displaced: dict[str, Any] = {}
    present = POSTHOG_INSTRUCTIONS.intersection(properties)
    for key, value in properties.items():
        if key in POSTHOG_INSTRUCTIONS:
            renamed[RAW_PREFIX + key] = value
        elif key.startswith(RAW_PREFIX) and key[len(RAW_PREFIX) :] in present:
            displaced[key] = value
        else:
            renamed[key] = value
    return renamed, displaced


def person_values(
    user_properties: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """(newest-wins values, earliest-wins values, whether a renamed instruction displaced a
    user property) of one record's `user_properties`.

    Amplitude's `initial_*` properties (initial_utm_source, initial_referrer, ...) are
    first-touch values: the earliest event's, under their own name and under PostHog's
    `$initial_*` (PostHog's importer sends those with `$set_once`). The `$initial_*` copy
    leaves out `EMPTY` (Amplitude's "none"; PostHog's importer skips it too) and null; the
    plain name keeps exactly what Amplitude shows. A user property a renamed instruction
    displaced (`$amplitude_$set` beside `$set`) is kept in `CLASHING_USER_PROPERTIES`
    {name: value}.
    """
    person, displaced = neutralised(user_properties)
    if person is user_properties:
        person = dict(user_properties)
    if displaced:
        if CLASHING_USER_PROPERTIES in person:  # one of that very name goes in with the rest
            displaced[CLASHING_USER_PROPERTIES] = person[CLASHING_USER_PROPERTIES]
        person[CLASHING_USER_PROPERTIES] = displaced
    names = _INITIAL_NAMES.names
    try:
        found = [key for key in person if names[key]]
    except KeyError:
        found = [key for key in person if _INITIAL_NAMES.learn(key)]
    if not found:
        return person, {}, bool(displaced)
    initial: dict[str, Any] = {}
    for key in found:
        value = person.pop(key)
        initial[key] = value
        if value != EMPTY and value is not None:
            initial[names.get(key) or _INITIAL_NAMES.learn(key)] = value
    return person, initial, bool(displaced)


_INITIAL_NAMES = NameCache(lambda key: f"$initial_{key[8:]}" if key.startswith("initial_") else "")
