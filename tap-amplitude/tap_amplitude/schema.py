"""The catalog schema of the `events` stream: Amplitude's raw export record.

Every field has exactly one JSON type (plus null), so that every Singer target can give it one
column type: targets of the pipelinewise family map a union such as string|number|boolean to a
number column and then fail on the values, and others load it as text. The types are the ones
Amplitude documents for the Export API's records (``paying`` boolean, ``$schema`` int,
``amplitude_attribution_ids`` string, ``amplitude_id``/``session_id`` long, ``location_lat``
float, ... : amplitude.com/docs/apis/analytics/export, "Response schema"); ``sample_rate``,
documented only as null, is a number. Values that arrive in another type are converted exactly
or set aside by :mod:`tap_amplitude.conform`.

Fields the schema does not name (Amplitude adds fields over time) are not dropped: they are
gathered in one object field, :data:`EXTRA_FIELD`, that every target can store (a JSON column).
"""

from __future__ import annotations

from typing import Any

from singer_plugin_common.amplitude_records import EXTRA_FIELD

# Amplitude's ids and counters are 64-bit ("long"); the bounds let SQL targets pick BIGINT.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _nullable(json_type: str, **extra: Any) -> dict[str, Any]:
    return {"type": [json_type, "null"], **extra}


STRING = _nullable("string")
INTEGER = _nullable("integer", minimum=INT64_MIN, maximum=INT64_MAX)
NUMBER = _nullable("number")
BOOLEAN = _nullable("boolean")
DATETIME = _nullable("string", format="date-time")
OBJECT = _nullable("object", additionalProperties=True)

_PROPERTIES: dict[str, dict[str, Any]] = {
    # Identity
    "uuid": {"type": "string"},  # primary key: Amplitude sets it on every event
    # Set by the tap (keys.py, lines.py): a derived uuid, the unusable original, repairs made.
    "uuid_derived": BOOLEAN,
    "uuid_original": STRING,
    "repairs": _nullable("array", items={"type": "string"}),
    "$insert_id": STRING,
    "$insert_key": STRING,
    "user_id": STRING,
    "device_id": STRING,
    "amplitude_id": INTEGER,
    "session_id": INTEGER,
    "event_id": INTEGER,
    # Event
    "event_type": STRING,
    "event_properties": OBJECT,
    "user_properties": OBJECT,
    "groups": OBJECT,
    "group_properties": OBJECT,
    "global_user_properties": OBJECT,
    "data": OBJECT,
    "data_type": STRING,
    "amplitude_event_type": STRING,
    "is_attribution_event": BOOLEAN,
    "amplitude_attribution_ids": STRING,
    "plan": OBJECT,
    "partner_id": STRING,
    "source_id": STRING,
    "sample_rate": NUMBER,
    "$schema": INTEGER,
    # Times, emitted as RFC 3339 UTC
    "event_time": DATETIME,
    "client_event_time": DATETIME,
    "client_upload_time": DATETIME,
    "server_received_time": DATETIME,
    "server_upload_time": DATETIME,
    "processed_time": DATETIME,
    "user_creation_time": DATETIME,
    # Context
    "app": INTEGER,
    "platform": STRING,
    "os_name": STRING,
    "os_version": STRING,
    "device_brand": STRING,
    "device_manufacturer": STRING,
    "device_model": STRING,
    "device_family": STRING,
    "device_type": STRING,
    "device_carrier": STRING,
    "version_name": STRING,
    "start_version": STRING,
    "library": STRING,
    "language": STRING,
    "ip_address": STRING,
    "country": STRING,
    "region": STRING,
    "city": STRING,
    "dma": STRING,
    "location_lat": NUMBER,
    "location_lng": NUMBER,
    "idfa": STRING,
    "adid": STRING,
    "paying": BOOLEAN,
    # Not Amplitude's: what the fields above cannot hold (see EXTRA_FIELD).
    EXTRA_FIELD: OBJECT,
}

EVENTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": _PROPERTIES,
    # Records carry no other top-level field: SQL targets would drop it silently.
    "additionalProperties": False,
}
