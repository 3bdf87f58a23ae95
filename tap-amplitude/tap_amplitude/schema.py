"""The catalog schema of the `events` stream: Amplitude's raw export record.

Types are deliberately tolerant (every field nullable, several fields accept what Amplitude has
been seen to send over the years) and `additionalProperties` is true: new fields appear in exports
over time, and a migration must carry them rather than drop them.
"""

from __future__ import annotations

from typing import Any


def _nullable(*types: str, **extra: Any) -> dict[str, Any]:
    return {"type": [*types, "null"], **extra}


STRING = _nullable("string")
INTEGER = _nullable("integer")
NUMBER = _nullable("number")
BOOLEAN = _nullable("boolean")
DATETIME = _nullable("string", format="date-time")
OBJECT = _nullable("object", additionalProperties=True)
ARRAY = _nullable("array")
# Fields whose type has varied between projects and years.
LOOSE = _nullable("string", "number", "integer", "boolean")

_PROPERTIES: dict[str, dict[str, Any]] = {
    # Identity
    "uuid": {"type": "string"},  # primary key: Amplitude sets it on every event
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
    "is_attribution_event": _nullable("boolean", "string"),
    "amplitude_attribution_ids": _nullable("array", "string"),
    "plan": OBJECT,
    "partner_id": STRING,
    "source_id": STRING,
    "sample_rate": NUMBER,
    "$schema": LOOSE,
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
    "paying": LOOSE,
}

EVENTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": _PROPERTIES,
    "additionalProperties": True,
}
