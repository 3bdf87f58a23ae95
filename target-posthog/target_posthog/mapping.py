"""Amplitude export record -> PostHog events. Pure functions: no I/O, no clocks, no randomness.

Everything a re-sent record turns into (name, distinct_id, timestamp, uuid) is derived from the
record alone (`event_keys`), so a record delivered twice (retry, lost acknowledgement, resumed
run) becomes the same PostHog event and PostHog's ReplacingMergeTree collapses it. The parts:
`identity` (distinct_id, aliases), `persons` ($set/$set_once), `groups`, `context` (device,
page, location, session).

`mapping_table.MAPPING_TABLE` is the single description of the mapping (the README's table).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from target_posthog.capture_ids import hashed_id, is_reserved, needs_hashing
from target_posthog.context import (
    CONSUMED_FIELDS,
    add_context,
    add_device_and_session,
    add_page_properties,
)
from target_posthog.event_keys import TIME_SOURCE_PROPERTY, event_timestamp, record_uuid
from target_posthog.fields import RAW_PREFIX, NameCache, UnmappableError, object_field
from target_posthog.groups import (
    GROUP_UPDATE,
    GroupObservation,
    group_observations,
    group_updates,
    groups_property,
)
from target_posthog.identity import clean_id
from target_posthog.mapping_notes import (
    CLASHING_EVENT_PROPERTIES,
    CLASHING_FIELDS,
    CLASHING_USER_PROPERTIES,
    LONG_OR_NUL_ID,
    RESERVED_ID,
    TIME_OUT_OF_RANGE,
)
from target_posthog.persons import PERSON_UPDATE, neutralised, person_values

# The dead-letter reason of a record without an event type (missing, not a string, blank):
# Amplitude's charts count events by type, so it is in none of them (target-posthog-verify).
NO_EVENT_TYPE = "no event_type"

PAGEVIEW = "$pageview"
UUID_DERIVED_PROPERTY = RAW_PREFIX + "uuid_derived"
# Event properties whose names the export's own fields took (their values, by name).
CLASHING_PROPERTY = RAW_PREFIX + "clashing_event_properties"
# Export fields whose `$amplitude_<field>` name the target's own property or another field
# took ({field as exported: value}).
CLASHING_FIELDS_PROPERTY = RAW_PREFIX + "clashing_fields"
# The target's own `$amplitude_*` properties: an export field of that name never holds one.
_OWN_NAMES = frozenset(
    (
        TIME_SOURCE_PROPERTY,
        CLASHING_PROPERTY,
        CLASHING_FIELDS_PROPERTY,
        RAW_PREFIX + "event_type",
        RAW_PREFIX + "uuid",
        RAW_PREFIX + "event_time",
        RAW_PREFIX + "groups",
    )
)
# Amplitude's export fields spelled with `$` (tap-amplitude's schema.py): they keep
# `$amplitude_<name>` over a field spelled without; otherwise the plain spelling keeps it.
_DOLLAR_FIELDS = frozenset(("$insert_id", "$schema"))

# `$identify` rows are person updates; events PostHog would read as a merge of two persons are
# renamed, so only the target's own aliases merge anyone (the original stays in
# `$amplitude_event_type`).
EVENT_NAMES = {
    "[Amplitude] Page Viewed": PAGEVIEW,
    "$identify": PERSON_UPDATE,
    "$create_alias": RAW_PREFIX + "$create_alias",
    "$merge_dangerously": RAW_PREFIX + "$merge_dangerously",
}


# Fields consumed by the mapping itself; everything else is kept as $amplitude_<field>.
_CONSUMED = frozenset(
    (
        "event_type",
        "event_time",
        "uuid",
        "event_properties",
        "user_properties",
        "groups",
        *CONSUMED_FIELDS,
    )
)


class Mapped(NamedTuple):
    """The PostHog events of one record, its identity pair (for aliasing), and the person and
    group properties it shows (for `ledger.PropertyLedger`, which sends them newest-first)."""

    events: list[dict[str, Any]]
    device_id: str | None
    user_id: str | None
    timestamp: str
    # Whose properties these are: the distinct_id (None: the record shows none).
    person_key: str | None = None
    person: dict[str, Any] | None = None  # person context ($geoip_*, $os, ...): newest each
    initial: dict[str, Any] | None = None  # $initial_* values (earliest wins)
    groups: list[GroupObservation] | None = None
    order: str = ""  # timestamp + uuid: which of two observations is newer
    # user_properties: the user's whole property snapshot at that time (newest snapshot wins)
    snapshot: dict[str, Any] | None = None
    notes: tuple[str, ...] = ()  # mapping_notes kinds this record met (counted, logged once)


def map_record(record: dict[str, Any], latest: str | None = None) -> Mapped:
    """Map one Amplitude export record; `UnmappableError` for records that must not be sent.

    `latest`: the latest event time PostHog keeps (`event_keys.latest_time` of the run's
    start); a later one counts as no time (the next time field is used). None: no bound.

    Placeholder ids (`identity.PLACEHOLDER_IDS`) count as absent: the distinct_id is the
    device's when the user_id is one, and a record with neither id usable is refused.
    """
    event_type = record.get("event_type")
    if not isinstance(event_type, str) or not event_type.strip():
        raise UnmappableError(NO_EVENT_TYPE)
    try:
        timestamp, time_field, out_of_range = event_timestamp(record, latest)
    except ValueError as exc:
        raise UnmappableError(str(exc)) from None
    get = record.get
    user_id = clean_id(get("user_id"))
    raw_device_id = get("device_id")
    device_id = clean_id(raw_device_id)
    # Objects (the common case) skip the checking call.
    event_properties = get("event_properties")
    if event_properties.__class__ is not dict:
        event_properties = object_field(record, "event_properties")
    user_properties = get("user_properties")
    if user_properties.__class__ is not dict:
        user_properties = object_field(record, "user_properties")
    groups = get("groups")
    if groups.__class__ is not dict:
        groups = object_field(record, "groups")
    event_uuid = record_uuid(record)
    order = timestamp + event_uuid
    notes: tuple[str, ...] = (TIME_OUT_OF_RANGE,) if out_of_range else ()
    # Ids PostHog's capture would cut or change (so merge), and real ids of the form of the
    # target's own made-up ids (capture_ids.py): a stable hashed form instead; the originals
    # stay in $amplitude_user_id / $amplitude_device_id.
    original_device_id = device_id
    hashed = reserved = False
    if user_id is not None:
        if needs_hashing(user_id):
            user_id, hashed = hashed_id(user_id), True
        elif is_reserved(user_id):
            user_id, reserved = hashed_id(user_id), True
    if device_id is not None:
        if needs_hashing(device_id):
            device_id, hashed = hashed_id(device_id), True
        elif is_reserved(device_id):
            device_id, reserved = hashed_id(device_id), True
    if hashed:
        notes += (LONG_OR_NUL_ID,)
    if reserved:
        notes += (RESERVED_ID,)

    if event_type == GROUP_UPDATE:
        distinct_id = user_id or device_id
        events, observed = group_updates(record, distinct_id, timestamp, event_uuid, groups)
        # person_key: who showed the groups (None: nobody); no person values to observe.
        return Mapped(
            events,
            device_id,
            user_id,
            timestamp,
            distinct_id,
            None,
            None,
            observed,
            order,
            notes=notes,
        )

    distinct_id = user_id or device_id
    if distinct_id is None:
        raise UnmappableError(_no_usable_id(record))
    properties = _raw_fields(record)
    raw = properties.copy()
    if user_id is None and _is_blank(get("user_id")):
        properties.pop(RAW_PREFIX + "user_id", None)  # "" or "  ": no information to keep
        raw.pop(RAW_PREFIX + "user_id", None)
    own, displaced = neutralised(event_properties)
    if properties.keys().isdisjoint(own):
        properties.update(own)
    else:  # `$amplitude_user_id` and the like: the export's own field keeps its name
        for key, value in own.items():
            properties.setdefault(key, value)
    snapshot, initial, person_clashed = person_values(user_properties)
    if person_clashed:
        notes += (CLASHING_USER_PROPERTIES,)
    person: dict[str, Any] = {}
    add_page_properties(properties, person, event_properties)
    add_context(properties, person, record)
    name = EVENT_NAMES.get(event_type, event_type)
    if name != event_type:
        properties[RAW_PREFIX + "event_type"] = event_type
    original_uuid = get("uuid")
    if event_uuid != original_uuid:
        properties[UUID_DERIVED_PROPERTY] = True  # as tap-amplitude marks the uuids it derives
        if original_uuid is not None:
            properties[RAW_PREFIX + "uuid"] = original_uuid  # the invalid original, for tracing
    if time_field != "event_time":
        properties[TIME_SOURCE_PROPERTY] = time_field
        unreadable = get("event_time")
        if unreadable is not None:  # not a time, but kept as exported: nothing changes silently
            properties[RAW_PREFIX + "event_time"] = unreadable
    add_device_and_session(properties, device_id, get("session_id"), device_id or distinct_id)
    if device_id != original_device_id:
        properties[RAW_PREFIX + "device_id"] = original_device_id
    if device_id is None and raw_device_id is not None and not _is_blank(raw_device_id):
        properties[RAW_PREFIX + "device_id"] = raw_device_id  # a placeholder, kept for tracing
    if groups:
        properties["$groups"] = groups_property(groups)
        properties[RAW_PREFIX + "groups"] = groups
    # No $set/$set_once on the event: PostHog applies them in ingestion order, so an old event
    # uploaded late would overwrite newer values. The ledger sends each person's newest.
    properties["$geoip_disable"] = True
    properties["analytics_source"] = "amplitude"
    fields = _clashing_fields(record, raw, properties)
    if fields:
        properties[CLASHING_FIELDS_PROPERTY] = fields
        notes += (CLASHING_FIELDS,)
    if (own or displaced) and _keep_clashing(properties, own, displaced):
        notes += (CLASHING_EVENT_PROPERTIES,)
    event = {
        "event": name,
        "distinct_id": distinct_id,
        "timestamp": timestamp,
        "uuid": event_uuid,
        "properties": properties,
    }
    group_properties = get("group_properties")
    return Mapped(
        [event],
        device_id,
        user_id,
        timestamp,
        distinct_id,
        person or None,
        initial or None,
        group_observations(group_properties) if group_properties else None,
        order,
        snapshot or None,
        notes,
    )


def _keep_clashing(
    properties: dict[str, Any], own: dict[str, Any], displaced: dict[str, Any]
) -> bool:
    """Keep in `CLASHING_PROPERTY` each event property whose name a property mapped from the
    export's own fields took with another value (`$current_url` from `[Amplitude] Page URL`,
    `$lib` from `library`, `$amplitude_user_id` from `user_id`, ...); True when there was one.

    The export's fields win their names: PostHog reads `$current_url`, `$lib`, `$ip` as
    the event's context, and `$amplitude_<field>` must hold the export's field. An equal value
    (same type too: 1 is not true) lost nothing and is not repeated. `displaced`: the event
    properties a renamed instruction took the name of (`persons.neutralised`), kept here too.
    """
    clashing = {
        key: value
        for key, value in own.items()
        if (mapped := properties.get(key)) is not value
        and (mapped.__class__ is not value.__class__ or mapped != value)
    }
    clashing.update(displaced)
    if not clashing:
        return False
    if CLASHING_PROPERTY in own:  # an event property of that very name goes in with the rest
        clashing[CLASHING_PROPERTY] = own[CLASHING_PROPERTY]
    properties[CLASHING_PROPERTY] = clashing
    return True


def _clashing_fields(
    record: dict[str, Any], raw: dict[str, Any], properties: dict[str, Any]
) -> dict[str, Any]:
    """{field as exported: value} of the export fields `_raw_fields` named `$amplitude_<field>`
    that do not hold that name in `properties`: one of `_OWN_NAMES` (removed from
    `properties`), a name the mapping wrote over (`$device_id` under `$amplitude_device_id`), or
    the twin of a field spelled with and without `$` (`insert_id` beside `$insert_id`)."""
    clashing: dict[str, Any] = {}
    names = _RAW_NAMES.names
    for field, value in record.items():
        if not _kept(field, value):
            continue
        name = names[field]
        if name not in raw:  # left out on purpose (a blank user_id)
            continue
        twin = field[1:] if field.startswith("$") else "$" + field
        if _kept(twin, record.get(twin)):
            dollar = field if field.startswith("$") else twin
            keeper = dollar if dollar in _DOLLAR_FIELDS else dollar[1:]
            if field != keeper:
                clashing[field] = value
                continue
            held = raw[name]
            if held is not value and properties.get(name) is held:  # the twin came later
                properties[name] = raw[name] = value
        if name in _OWN_NAMES:
            clashing[field] = value
            if properties.get(name) is value:
                del properties[name]
            continue
        mapped = properties.get(name)
        if mapped is not value and (mapped.__class__ is not value.__class__ or mapped != value):
            clashing[field] = value
    return clashing


def _kept(field: str, value: object) -> bool:
    """Whether `_raw_fields` keeps this field (the same test)."""
    return (
        value is not None
        and field not in _CONSUMED
        and bool(value or value.__class__ not in _CONTAINERS)
    )


def _is_blank(value: object) -> bool:
    return isinstance(value, str) and not value.strip()


def _no_usable_id(record: dict[str, Any]) -> str:
    """The dead-letter reason for a record whose ids are all absent or placeholders."""
    shown = [
        f"{field} {value!r}"
        for field in ("user_id", "device_id")
        if (value := record.get(field)) is not None and not _is_blank(value)
    ]
    if not shown:
        return "neither user_id nor device_id"
    return f"no usable user_id or device_id: {', '.join(shown)}: placeholders that name nobody"


def _raw_fields(record: dict[str, Any]) -> dict[str, Any]:
    """Every other Amplitude field under `$amplitude_<field>`, so nothing of the export is lost.

    One comprehension on purpose: this runs for every record and is the mapping's hot spot.
    """
    names = _RAW_NAMES.names
    try:  # a plain dict's lookup is the fast one; a field seen for the first time raises
        return {
            names[field]: value
            for field, value in record.items()
            if value is not None
            and field not in _CONSUMED
            and (value or value.__class__ not in _CONTAINERS)
        }
    except KeyError:
        name = _RAW_NAMES.learn
        return {
            name(field): value
            for field, value in record.items()
            if value is not None
            and field not in _CONSUMED
            and (value or value.__class__ not in _CONTAINERS)
        }


_CONTAINERS = (dict, list, str)  # empty ones carry nothing
_RAW_NAMES = NameCache(lambda field: RAW_PREFIX + field.removeprefix("$"))
