"""Amplitude export record -> PostHog events. Pure functions: no I/O, no clocks, no randomness.

Everything a re-sent record turns into (name, distinct_id, timestamp, uuid) is derived from the
record alone, so a record delivered twice (retry, lost acknowledgement, resumed run) becomes the
same PostHog event and PostHog's ReplacingMergeTree collapses it.

`MAPPING_TABLE` is the single description of the mapping; the README table is rendered from it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import orjson

# Never change: every derived uuid (events without a valid Amplitude uuid, aliases, group
# updates) is computed in this namespace, and changing it would defeat PostHog's dedupe.
UUID_NAMESPACE = uuid.UUID("6b1c9f3e-2f4d-5a8e-9c70-3d1e8a5b4f21")

RAW_PREFIX = "$amplitude_"
PAGEVIEW = "$pageview"
PERSON_UPDATE = "$set"
GROUP_UPDATE = "$groupidentify"
ALIAS = "$create_alias"

EVENT_NAMES = {"[Amplitude] Page Viewed": PAGEVIEW, "$identify": PERSON_UPDATE}

# PostHog refuses to merge persons through these ids (PersonMergeService's illegal lists).
_ILLEGAL_CASE_INSENSITIVE = frozenset(
    (
        "anonymous",
        "guest",
        "distinctid",
        "distinct_id",
        "id",
        "not_authenticated",
        "email",
        "undefined",
        "true",
        "false",
    )
)
_ILLEGAL_CASE_SENSITIVE = frozenset(
    ("[object Object]", "NaN", "None", "none", "null", "0", "undefined")
)

_LONGEST_ILLEGAL_ID = max(map(len, _ILLEGAL_CASE_INSENSITIVE | _ILLEGAL_CASE_SENSITIVE))
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Amplitude session ids are the session start in epoch ms; only such values become UUIDv7s.
_SESSION_MS_MIN, _SESSION_MS_MAX = 946_684_800_000, 4_102_444_800_000  # 2000 .. 2100
_WEB_DESKTOP_OS = {
    "Mac": "Mac OS X",
    "Mac OS": "Mac OS X",
    "Mac OS X": "Mac OS X",
    "Windows": "Windows",
    "Linux": "Linux",
    "Chrome OS": "Chrome OS",
    "Ubuntu": "Linux",
}
_WEB_MOBILE_OS = {"iOS": "iOS", "Android": "Android"}
_MOBILE_OS = {
    "ios": "iOS",
    "ipados": "iPadOS",
    "android": "Android",
    "tvos": "tvOS",
    "watchos": "watchOS",
}


@dataclass(frozen=True, slots=True)
class Rule:
    """One line of the mapping: where an Amplitude field goes and why."""

    amplitude: str
    posthog: str
    why: str = ""  # set where we differ from PostHog's own Amplitude importer


MAPPING_TABLE: tuple[Rule, ...] = (
    Rule(
        "event_type",
        "event",
        "`[Amplitude] Page Viewed` -> `$pageview`, `$identify` -> `$set` (person update), "
        "`$groupidentify` -> `$groupidentify` (group update); others unchanged. The importer "
        "passes `$identify`/`$groupidentify` through as plain events and drops `session_start`; "
        "we keep every event, and keep the original name in `$amplitude_event_type` when "
        "renamed. `[Amplitude] Element Clicked/Changed` keep their names: the importer's "
        "`$autocapture` without PostHog's `$elements` data cannot be used in PostHog",
    ),
    Rule(
        "event_time",
        "timestamp",
        "RFC 3339 UTC. No parseable `event_time` -> dead-letter; the importer stamps the import "
        "time, which puts history on the wrong day",
    ),
    Rule(
        "uuid",
        "uuid",
        "Amplitude's uuid when valid, else uuid5 of `$insert_id` (or of the whole record): "
        "deterministic, so a re-send dedupes; the importer uses a random UUIDv7",
    ),
    Rule(
        "user_id, else device_id",
        "distinct_id",
        "no id at all -> dead-letter; the importer invents a random person",
    ),
    Rule("event_properties", "properties (all keys, unchanged)"),
    Rule(
        "user_properties",
        "properties.$set",
        "the importer drops custom user properties; PostHog's migration guide sends them as $set",
    ),
    Rule(
        "user_properties.initial_*",
        "properties.$set_once.$initial_*",
        "every `initial_*` (not only utm/referrer); value `EMPTY` skipped",
    ),
    Rule(
        "[Amplitude] Page URL / Domain / Path / Title", "$current_url / $host / $pathname / title"
    ),
    Rule("[Amplitude] Viewport Height / Width", "$viewport_height / $viewport_width"),
    Rule("event_properties.referrer / referring_domain", "$referrer / $referring_domain"),
    Rule(
        "os_name, os_version (platform Web)",
        "$browser, $browser_version",
        "Amplitude's browser SDK reports the browser there",
    ),
    Rule(
        "device_type (platform Web)",
        "$os (+ $device_type Desktop/Mobile)",
        "`Mac` normalised to PostHog's `Mac OS X`",
    ),
    Rule(
        "os_name, os_version (other platforms)",
        "$os, $os_version",
        "the importer maps os_name to $browser for every platform, which labels iOS/Android "
        "as browsers and phone models as operating systems",
    ),
    Rule(
        "device_model, device_manufacturer (or device_brand), device_carrier (apps)",
        "$device_model, $device_manufacturer, $network_carrier (+ $device_type Mobile/Tablet)",
        "not mapped by the importer",
    ),
    Rule(
        "country / region / city",
        "$geoip_country_name / $geoip_subdivision_1_name / $geoip_city_name (also in $set)",
    ),
    Rule(
        "location_lat / location_lng",
        "$geoip_latitude / $geoip_longitude",
        "not mapped by the importer",
    ),
    Rule(
        "ip_address",
        "$ip (with `$geoip_disable: true`)",
        "historic IPs are not geolocated again at import time",
    ),
    Rule("version_name", "$app_version", "not mapped by the importer"),
    Rule("library (`name/version`)", "$lib, $lib_version", "not mapped by the importer"),
    Rule(
        "session_id",
        "$amplitude_session_id and $session_id",
        "$session_id is a deterministic UUIDv7 whose time is the session start, so PostHog's "
        "sessions and web analytics work; the importer sets no $session_id",
    ),
    Rule("device_id", "$amplitude_device_id and $device_id"),
    Rule(
        "groups",
        "$groups {type: first key} (+ all keys in $amplitude_groups)",
        "the importer keeps only the first key",
    ),
    Rule("amplitude_id", "$amplitude_id"),
    Rule(
        "any other field (user_id, event_id, $insert_id, times, data, plan, ...)",
        "`$amplitude_<field>` (leading `$` dropped)",
        "the importer drops them; null and empty values are left out",
    ),
    Rule("(every event)", "$geoip_disable: true, analytics_source: amplitude"),
    Rule(
        "(device_id, user_id) pair, first time seen",
        "$create_alias (distinct_id=user_id, "
        "alias=device_id), once per pair, at the pair's first event",
        "the importer sends $identify; see 'Aliases' below",
    ),
)

# Context fields with one PostHog name whatever the platform: (field, property, also in $set).
_COMMON_CONTEXT: tuple[tuple[str, str, bool], ...] = (
    ("country", "$geoip_country_name", True),
    ("city", "$geoip_city_name", True),
    ("region", "$geoip_subdivision_1_name", True),
    ("location_lat", "$geoip_latitude", False),
    ("location_lng", "$geoip_longitude", False),
    ("ip_address", "$ip", False),
    ("version_name", "$app_version", False),
)
# event_properties key -> (PostHog property, also in $set)
_PAGE_PROPERTIES: dict[str, tuple[str, bool]] = {
    "[Amplitude] Page URL": ("$current_url", True),
    "[Amplitude] Page Domain": ("$host", False),
    "[Amplitude] Page Path": ("$pathname", True),
    "[Amplitude] Page Title": ("title", False),
    "[Amplitude] Viewport Height": ("$viewport_height", False),
    "[Amplitude] Viewport Width": ("$viewport_width", False),
    "referrer": ("$referrer", True),
    "referring_domain": ("$referring_domain", True),
}
_PERSON_CONTEXT = ("$os", "$browser", "$device_type")
# Fields consumed by the mapping itself; everything else is kept as $amplitude_<field>.
_CONSUMED = frozenset(
    (
        "event_type",
        "event_time",
        "uuid",
        "event_properties",
        "user_properties",
        "groups",
        "os_name",
        "os_version",
        "device_type",
        "device_model",
        "device_manufacturer",
        "device_brand",
        "device_carrier",
        "library",
        "amplitude_id",
        "session_id",
        "device_id",
        *(field for field, _, _ in _COMMON_CONTEXT),
    )
)


class UnmappableError(Exception):
    """The record cannot become a PostHog event; `reason` says why (goes to the dead-letter)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Mapped(NamedTuple):
    """The PostHog events of one record, and the identity pair it shows (for aliasing)."""

    events: list[dict[str, Any]]
    device_id: str | None
    user_id: str | None
    timestamp: str


def map_record(record: dict[str, Any]) -> Mapped:
    """Map one Amplitude export record; `UnmappableError` for records that must not be sent."""
    event_type = record.get("event_type")
    if not isinstance(event_type, str) or not event_type.strip():
        raise UnmappableError("no event_type")
    timestamp = parse_time(record.get("event_time"))
    if timestamp is None:
        raise UnmappableError("event_time missing or not a time")
    get = record.get
    user_id = clean_id(get("user_id"))
    device_id = clean_id(get("device_id"))
    # Objects (the common case) skip the checking call.
    event_properties = get("event_properties")
    if event_properties.__class__ is not dict:
        event_properties = _object_field(record, "event_properties")
    user_properties = get("user_properties")
    if user_properties.__class__ is not dict:
        user_properties = _object_field(record, "user_properties")
    groups = get("groups")
    if groups.__class__ is not dict:
        groups = _object_field(record, "groups")
    event_uuid = record_uuid(record)

    if event_type == GROUP_UPDATE:
        events = _group_updates(record, user_id or device_id, timestamp, event_uuid, groups)
        return Mapped(events, device_id, user_id, timestamp)

    distinct_id = user_id or device_id
    if distinct_id is None:
        raise UnmappableError("neither user_id nor device_id")
    properties = _raw_fields(record)
    properties.update(event_properties)
    person: dict[str, Any] = dict(user_properties)
    _add_page_properties(properties, person, event_properties)
    _add_context(properties, person, record)
    name = EVENT_NAMES.get(event_type, event_type)
    if name != event_type:
        properties[RAW_PREFIX + "event_type"] = event_type
    original_uuid = get("uuid")
    if event_uuid != original_uuid and original_uuid is not None:
        properties[RAW_PREFIX + "uuid"] = original_uuid  # the invalid original, for tracing
    if device_id is not None:
        properties["$device_id"] = device_id
        properties[RAW_PREFIX + "device_id"] = device_id
    session_id = get("session_id")
    if isinstance(session_id, int) and not isinstance(session_id, bool):
        if session_id > 0:
            properties[RAW_PREFIX + "session_id"] = session_id
        if _SESSION_MS_MIN <= session_id < _SESSION_MS_MAX:
            properties["$session_id"] = session_uuid(session_id, device_id or distinct_id)
    if groups:
        properties["$groups"] = {
            str(kind): str(first)
            for kind, key in groups.items()
            if (first := _first(key)) is not None
        }
        properties[RAW_PREFIX + "groups"] = groups
    if person:
        properties["$set"] = person
    initial = _initial_values(user_properties)
    if initial:
        properties["$set_once"] = initial
    properties["$geoip_disable"] = True
    properties["analytics_source"] = "amplitude"
    event = {
        "event": name,
        "distinct_id": distinct_id,
        "timestamp": timestamp,
        "uuid": event_uuid,
        "properties": properties,
    }
    return Mapped([event], device_id, user_id, timestamp)


def alias_event(device_id: str, user_id: str, timestamp: str) -> dict[str, Any]:
    """The one `$create_alias` that ties a device's anonymous events to its user.

    Merges the device's person into the user's (PostHog merges `alias` into `distinct_id`).
    The uuid depends only on the pair, so a repeat after a crash is the same PostHog event.
    """
    return {
        "event": ALIAS,
        "distinct_id": user_id,
        "timestamp": timestamp,
        "uuid": str(uuid.uuid5(UUID_NAMESPACE, f"alias\x1f{device_id}\x1f{user_id}")),
        "properties": {
            "distinct_id": user_id,
            "alias": device_id,
            "$amplitude_user_id": user_id,
            "$amplitude_device_id": device_id,
            "$geoip_disable": True,
            "analytics_source": "amplitude",
        },
    }


def can_alias(device_id: str, user_id: str) -> bool:
    """False for pairs PostHog would refuse to merge (same id twice, or an illegal id)."""
    return device_id != user_id and not (_is_illegal(device_id) or _is_illegal(user_id))


def _is_illegal(identifier: str) -> bool:
    if len(identifier) > _LONGEST_ILLEGAL_ID + 2:  # almost every real id: no string work
        return False
    stripped = identifier.strip().strip("\"'")
    return (
        stripped.lower() in _ILLEGAL_CASE_INSENSITIVE
        or stripped in _ILLEGAL_CASE_SENSITIVE
        or not stripped
    )


def parse_time(value: object) -> str | None:
    """RFC 3339 UTC with microseconds, from RFC 3339 or Amplitude's `YYYY-MM-DD HH:MM:SS.ffffff`."""
    if isinstance(value, str):
        try:
            moment = _from_iso(value)
        except ValueError:
            return None
        # Fast paths (no formatting) for the two forms that make up nearly all input.
        if len(value) == 32 and value[10] == "T" and value.endswith("+00:00"):
            return value  # the tap's form, already canonical
        if len(value) == 26 and value[10] == " ":
            return f"{value[:10]}T{value[11:]}+00:00"  # Amplitude's form, UTC
    elif isinstance(value, dt.datetime):  # records that went through singer-sdk's parsing
        moment = value
    else:
        return None
    if moment.tzinfo is None:  # Amplitude's own form has no zone and is UTC
        moment = moment.replace(tzinfo=dt.UTC)
    elif moment.utcoffset():
        moment = moment.astimezone(dt.UTC)
    return moment.isoformat(timespec="microseconds")


_from_iso = dt.datetime.fromisoformat


def clean_id(value: object) -> str | None:
    """An identity as PostHog wants it: a non-blank string, or None."""
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def record_uuid(record: dict[str, Any]) -> str:
    """Amplitude's uuid if valid, else a uuid5 of a stable key (never random)."""
    value = record.get("uuid")
    if isinstance(value, str):
        if _CANONICAL_UUID.fullmatch(value):
            return value
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    insert_id = record.get("$insert_id")
    if isinstance(insert_id, str) and insert_id:
        # Amplitude dedupes on $insert_id per device, so that is the event's identity.
        key = f"insert_id\x1f{record.get('device_id')}\x1f{record.get('user_id')}\x1f{insert_id}"
    else:
        key = "record\x1f" + orjson.dumps(record, option=orjson.OPT_SORT_KEYS, default=str).decode()
    return str(uuid.uuid5(UUID_NAMESPACE, key))


@lru_cache(maxsize=4096)
def session_uuid(session_id: int, scope: str) -> str:
    """Deterministic UUIDv7 for an Amplitude session: time = session start, rest = hash."""
    digest = hashlib.sha1(f"{scope}\x1f{session_id}".encode(), usedforsecurity=False).digest()
    rand_a = int.from_bytes(digest[:2]) & 0xFFF
    rand_b = int.from_bytes(digest[2:10]) & ((1 << 62) - 1)
    value = (session_id << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    digits = f"{value:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def _object_field(record: dict[str, Any], field: str) -> dict[str, Any]:
    value = record.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UnmappableError(f"{field} is not an object")
    return value


def _first(key: object) -> object:
    if isinstance(key, list):
        return key[0] if key else None
    return key


def _add_page_properties(
    properties: dict[str, Any], person: dict[str, Any], event_properties: dict[str, Any]
) -> None:
    # In the table's order, not a set's: the payload bytes must not vary between processes.
    for field, (name, in_person) in _PAGE_PROPERTIES.items():
        value = event_properties.get(field)
        if value is not None:
            properties[name] = value
            if in_person:
                person[name] = value


def _add_context(
    properties: dict[str, Any], person: dict[str, Any], record: dict[str, Any]
) -> None:
    get = record.get
    for field, name, in_person in _COMMON_CONTEXT:
        value = get(field)
        if value is not None and value != "":
            properties[name] = value
            if in_person:
                person[name] = value
    platform = get("platform")
    if platform == "Web" or str(platform or "").lower() == "web":
        _add_web_context(properties, record)
    else:
        _add_app_context(properties, record)
    library = get("library")
    if isinstance(library, str) and library:
        properties.update(_library_properties(library))
    amplitude_id = get("amplitude_id")
    if amplitude_id is not None:
        properties["$amplitude_id"] = amplitude_id
    for name in _PERSON_CONTEXT:
        if name in properties:
            person[name] = properties[name]


def _add_web_context(properties: dict[str, Any], record: dict[str, Any]) -> None:
    """Amplitude's browser SDK puts the browser in os_name and the OS in device_type."""
    browser, version = record.get("os_name"), record.get("os_version")
    if browser:
        properties["$browser"] = browser
    if version is not None and version != "":
        properties["$browser_version"] = int(version) if str(version).isdigit() else version
    device_type = record.get("device_type") or record.get("device_family")
    if isinstance(device_type, str) and device_type:
        properties.update(_web_os_properties(device_type))
    for field, name in _WEB_RAW_DEVICE_FIELDS:
        value = record.get(field)
        if value is not None and value != "":
            properties[name] = value


_WEB_RAW_DEVICE_FIELDS = tuple(
    (field, RAW_PREFIX + field)
    for field in ("device_model", "device_manufacturer", "device_brand", "device_carrier")
)


@lru_cache(maxsize=1024)
def _web_os_properties(device_type: str) -> dict[str, str]:
    """$os (PostHog's names) and $device_type for a web event's Amplitude device_type."""
    if device_type in _WEB_DESKTOP_OS:
        return {"$os": _WEB_DESKTOP_OS[device_type], "$device_type": "Desktop"}
    if device_type in _WEB_MOBILE_OS:
        return {"$os": _WEB_MOBILE_OS[device_type], "$device_type": "Mobile"}
    return {"$os": device_type}


@lru_cache(maxsize=1024)
def _library_properties(library: str) -> dict[str, str]:
    """`amplitude-ts/2.7.4` -> $lib and $lib_version."""
    lib, _, version = library.partition("/")
    return {"$lib": lib, "$lib_version": version} if version else {"$lib": lib}


def _add_app_context(properties: dict[str, Any], record: dict[str, Any]) -> None:
    os_name = record.get("os_name")
    if isinstance(os_name, str) and os_name:
        properties["$os"] = _MOBILE_OS.get(os_name.lower(), os_name)
    version = record.get("os_version")
    if version is not None and version != "":
        properties["$os_version"] = version
    model = record.get("device_model")
    if model:
        properties["$device_model"] = model
    maker = record.get("device_manufacturer") or record.get("device_brand")
    if maker:
        properties["$device_manufacturer"] = maker
    carrier = record.get("device_carrier")
    if carrier:
        properties["$network_carrier"] = carrier
    platform = str(record.get("platform") or "")
    if platform in ("iOS", "Android"):
        hint = f"{record.get('device_family')} {model} {os_name}".lower()
        properties["$device_type"] = "Tablet" if "ipad" in hint or "tablet" in hint else "Mobile"
    device_type = record.get("device_type")
    if device_type is not None and device_type != "":
        properties[RAW_PREFIX + "device_type"] = device_type


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


def _initial_values(user_properties: dict[str, Any]) -> dict[str, Any]:
    """`initial_*` user properties as `$initial_*` (for $set_once); `EMPTY` and null left out."""
    names = _INITIAL_NAMES.names
    try:
        return {
            once: value
            for key, value in user_properties.items()
            if (once := names[key]) and value != "EMPTY" and value is not None
        }
    except KeyError:
        name = _INITIAL_NAMES.learn
        return {
            once: value
            for key, value in user_properties.items()
            if (once := name(key)) and value != "EMPTY" and value is not None
        }


_CONTAINERS = (dict, list)


class _NameCache:
    """field -> output name, computed once per distinct field (bounded: odd input must not
    grow memory without end). `names` is a plain dict (the fastest lookup); `learn` adds to it."""

    _LIMIT = 10_000

    def __init__(self, name_of: Callable[[str], str]) -> None:
        self.names: dict[str, str] = {}
        self._name_of = name_of

    def learn(self, field: str) -> str:
        name = self.names.get(field)
        if name is None:
            name = self._name_of(field)
            if len(self.names) < self._LIMIT:
                self.names[field] = name
        return name


_RAW_NAMES = _NameCache(lambda field: RAW_PREFIX + field.removeprefix("$"))
_INITIAL_NAMES = _NameCache(lambda key: f"$initial_{key[8:]}" if key.startswith("initial_") else "")


def _group_updates(
    record: dict[str, Any],
    distinct_id: str | None,
    timestamp: str,
    event_uuid: str,
    groups: dict[str, Any],
) -> list[dict[str, Any]]:
    """One `$groupidentify` per group a `$groupidentify` row names, with its properties."""
    group_properties = _object_field(record, "group_properties")
    updates: list[tuple[str, str, dict[str, Any]]] = []
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
        uuid_ = (
            event_uuid
            if len(updates) == 1
            else str(uuid.uuid5(UUID_NAMESPACE, f"group\x1f{event_uuid}\x1f{kind}\x1f{key}"))
        )
        events.append(
            {
                "event": GROUP_UPDATE,
                # posthog-python's group_identify uses this distinct_id when there is no person.
                "distinct_id": distinct_id or f"${kind}_{key}",
                "timestamp": timestamp,
                "uuid": uuid_,
                "properties": {
                    "$group_type": kind,
                    "$group_key": key,
                    "$group_set": values,
                    RAW_PREFIX + "uuid": record.get("uuid"),
                    "$geoip_disable": True,
                    "analytics_source": "amplitude",
                },
            }
        )
    return events


def mapping_table_markdown() -> str:
    """The README's mapping table."""
    lines = ["| Amplitude | PostHog | Differs from PostHog's importer because |", "|---|---|---|"]
    lines += [f"| {rule.amplitude} | {rule.posthog} | {rule.why} |" for rule in MAPPING_TABLE]
    return "\n".join(lines)
