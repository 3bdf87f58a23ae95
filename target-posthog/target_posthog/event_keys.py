"""What makes a re-sent record the same PostHog event: its timestamp and its uuids.

PostHog collapses two events only when date(timestamp), event name, distinct_id and uuid are
all equal (shared/reference/posthog-capture-api.md, section 2), so each of these is derived from
the record alone: no clocks, no randomness.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from functools import lru_cache
from typing import Any

import orjson
from singer_plugin_common import exact_json

# Never change: every derived uuid (events without a valid Amplitude uuid, aliases, group
# updates) is computed in this namespace, and changing it would defeat PostHog's dedupe.
UUID_NAMESPACE = uuid.UUID("6b1c9f3e-2f4d-5a8e-9c70-3d1e8a5b4f21")

_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_PLACEHOLDER_UUIDS = frozenset((uuid.UUID(int=0), uuid.UUID(int=(1 << 128) - 1)))
_PLACEHOLDER_TEXTS = frozenset(map(str, _PLACEHOLDER_UUIDS))
# Amplitude session ids are the session start in epoch ms; only such values become UUIDv7s.
SESSION_MS_MIN, SESSION_MS_MAX = 946_684_800_000, 4_102_444_800_000  # 2000 .. 2100


def derived_uuid(*parts: str) -> str:
    """uuid5 of `parts` (joined by U+001F) in the project's namespace: same parts, same uuid."""
    return str(uuid.uuid5(UUID_NAMESPACE, "\x1f".join(parts)))


def parse_time(value: object) -> str | None:
    """RFC 3339 UTC with microseconds (``2024-03-01T05:10:00.000000+00:00``), or None when
    ``value`` is not a date and time.

    The rule is tap-amplitude's (its times.py, ``fit_time``), so both plugins read every time
    alike (tests/test_exact_values.py runs both over the same inputs): ISO 8601 ``YYYY-MM-DD``,
    ``T``, ``t`` or a space, ``HH:MM:SS``, optional fraction (``.`` or ``,``), optional ``Z`` or
    offset ``±HH:MM``/``±HHMM``; no offset means UTC (Amplitude's own form has none and is
    UTC); digits below a microsecond are cut. Anything less (a date alone, ``2024-03-01``; no
    seconds; week dates) is not a time: it names no instant, and midnight would be invented.
    """
    if isinstance(value, str):
        # Fast paths (no reformatting) for the two forms that make up nearly all input.
        if (len(value) == 32 and _CANONICAL.fullmatch(value)) or (
            len(value) == 26 and _AMPLITUDE.fullmatch(value)
        ):
            try:
                _from_iso(value[:26])  # a real day, hour, minute and second?
            except ValueError:
                return None
            # The tap's form is canonical already; Amplitude's is UTC.
            return value if len(value) == 32 else f"{value[:10]}T{value[11:]}+00:00"
        match = _ISO_TIME.fullmatch(value)
        if match is None:
            return None
        day, clock, fraction, sign, zone_hours, zone_minutes = match.groups()
        try:
            moment = _from_iso(f"{day}T{clock}.{(fraction or '')[:6].ljust(6, '0')}")
            if sign is not None:
                offset = dt.timedelta(hours=int(zone_hours), minutes=int(zone_minutes))
                if offset >= _DAY:
                    return None
                moment -= offset if sign == "+" else -offset
        except (ValueError, OverflowError):
            return None
        return f"{moment.isoformat(timespec='microseconds')}+00:00"
    if isinstance(value, dt.datetime):  # records that went through singer-sdk's parsing
        moment = value
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        elif moment.utcoffset():
            moment = moment.astimezone(dt.UTC)
        return moment.isoformat(timespec="microseconds")
    return None


_from_iso = dt.datetime.fromisoformat
_DAY = dt.timedelta(hours=24)
_CANONICAL = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", re.ASCII)
_AMPLITUDE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", re.ASCII)
_ISO_TIME = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:[.,](\d+))?(?:[Zz]|([+-])(\d{2}):?(\d{2}))?"
)

# When the event happened, best first: the device's event time (adjusted by Amplitude for
# clock skew), the device's own clock, then when Amplitude's servers received it. PostHog's
# own Amplitude importer falls back the same way; never to the import time.
TIME_FIELDS = ("event_time", "client_event_time", "server_received_time")
TIME_SOURCE_PROPERTY = "$amplitude_timestamp_from"


# PostHog replaces a timestamp more than 23 h after its ingestion time with the ingestion time
# (capture's parse_event_timestamp, FUTURE_EVENT_HOURS_CUTOFF_MILLIS; ingestion warning
# `event_timestamp_in_future`): the event would land on the day of the import. Measured from
# the run's start, which is before any ingestion, so nothing accepted here is moved.
FUTURE_LIMIT = dt.timedelta(hours=23)
# PostHog keeps years 0-9999 (else stamps 1970-01-01), but no analytics event predates Unix
# time: an earlier time is a device clock that was never set, not when the event happened.
EARLIEST_TIME = "1970-01-01T00:00:00.000000+00:00"


def latest_time(run_start: dt.datetime) -> str:
    """The latest event time PostHog keeps for a run started at `run_start` (aware), in
    `parse_time`'s form, which compares as text."""
    moment = (run_start + FUTURE_LIMIT).astimezone(dt.UTC)
    return moment.isoformat(timespec="microseconds")


def event_timestamp(record: dict[str, Any], latest: str | None = None) -> tuple[str, str, bool]:
    """(RFC 3339 UTC timestamp, the field it came from, whether an earlier field held a time
    out of range), from the first of `TIME_FIELDS` that holds a time from `EARLIEST_TIME` to
    `latest` (None: no upper bound). Raises `ValueError` (naming the fields) when none does."""
    timestamp = parse_time(record.get("event_time"))
    if timestamp is not None and _in_range(timestamp, latest):  # nearly every record
        return timestamp, "event_time", False
    out_of_range = timestamp is not None
    for field in TIME_FIELDS[1:]:
        timestamp = parse_time(record.get(field))
        if timestamp is not None:
            if _in_range(timestamp, latest):
                return timestamp, field, out_of_range
            out_of_range = True
    fields = ", ".join(TIME_FIELDS)
    if out_of_range:
        raise ValueError(
            f"no usable time: {fields} missing, not times, more than 23 h after the run's start "
            "(PostHog would stamp the import time) or before 1970"
        )
    raise ValueError(f"no time: {fields} all missing or not times")


def _in_range(timestamp: str, latest: str | None) -> bool:
    return timestamp >= EARLIEST_TIME and (latest is None or timestamp <= latest)


def record_uuid(record: dict[str, Any]) -> str:
    """Amplitude's uuid if valid, else a uuid5 of a stable key (never random).

    ``uuid`` when it is a UUID string other than the nil and max UUIDs (placeholders for "no
    id": PostHog would make all such events of a day one); else uuid5(namespace,
    ``"insert_id␟<device_id>␟<user_id>␟<$insert_id>"``) when ``$insert_id`` is a non-empty
    string (tap-amplitude's keys.py has the same rule); else uuid5(namespace, ``"record␟"`` +
    the record as JSON with sorted keys. tap-amplitude sends every record with a uuid, derived
    there from the export line itself; this last rule serves records of other taps).
    """
    value = record.get("uuid")
    if isinstance(value, str):
        if _CANONICAL_UUID.fullmatch(value) and value not in _PLACEHOLDER_TEXTS:
            return value
        try:
            parsed = uuid.UUID(value)
        except ValueError:
            pass
        else:
            if parsed not in _PLACEHOLDER_UUIDS:
                return str(parsed)
    insert_id = record.get("$insert_id")
    if isinstance(insert_id, str) and insert_id:
        # Amplitude dedupes on $insert_id per device, so that is the event's identity.
        key = f"insert_id\x1f{record.get('device_id')}\x1f{record.get('user_id')}\x1f{insert_id}"
    else:
        text = exact_json.dumps(record, option=orjson.OPT_SORT_KEYS, default=str).decode()
        key = "record\x1f" + text
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
