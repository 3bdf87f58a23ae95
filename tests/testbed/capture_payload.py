"""PostHog's batch capture body, as the stand-in decodes and checks it (tests/testbed/posthog.py).

msgspec checks the whole body's JSON but builds only the few fields capture validates; each
event's other properties are skipped, not materialised (shared/reference/posthog-capture-api.md
section 1).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
import orjson

from tests.testbed.events import parse_utc
from tests.testbed.faults import Fault

_CANONICAL_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


class _Payload(msgspec.Struct, gc=False):
    """The request body: its events stay raw JSON until each is checked."""

    api_key: Any = None
    token: Any = None
    historical_migration: Any = None
    batch: msgspec.Raw = msgspec.Raw(b"null")


class EventFields(msgspec.Struct, gc=False):
    """What capture checks in an event; every other field is skipped without being built."""

    event: Any = None
    distinct_id: Any = None
    uuid: Any = None
    api_key: Any = None
    properties: msgspec.Raw = msgspec.Raw(b"null")
    set: msgspec.Raw = msgspec.field(default=msgspec.Raw(b"null"), name="$set")
    set_once: msgspec.Raw = msgspec.field(default=msgspec.Raw(b"null"), name="$set_once")


class _PropertiesDistinctId(msgspec.Struct, gc=False):
    distinct_id: Any = None


_decode_payload = msgspec.json.Decoder(_Payload).decode
_decode_raw_list = msgspec.json.Decoder(list[msgspec.Raw]).decode
decode_event_fields = msgspec.json.Decoder(EventFields).decode
_decode_properties = msgspec.json.Decoder(_PropertiesDistinctId).decode


@dataclass(frozen=True)
class CaptureRequest:
    """One request to /batch/, as the stand-in saw and answered it."""

    seq: int
    received_at: float  # time.time()
    status: int | None  # None: the connection was closed without an answer
    event_count: int  # events in the batch (whether stored or not)
    body_bytes: int  # raw body size, as sent
    gzip: bool  # the body was gzip-compressed
    historical_migration: bool
    uuids: tuple[str, ...]  # the batch's uuids ((): keep_events=False, or none decodable)
    fault: Fault | None = None
    stored: bool = False  # the batch's events were accepted (a 200, or a lost ack)


class RejectedError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def is_valid_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    if _CANONICAL_UUID.match(value):
        return True
    try:
        uuid.UUID(value)  # braces, urn: and plain-hex forms parse too, as in Rust's Uuid
    except ValueError:
        return False
    return True


def event_distinct_id(event: dict[str, Any]) -> Any:
    distinct_id = event.get("distinct_id")
    if distinct_id is None:
        properties = event.get("properties")
        if isinstance(properties, dict):
            distinct_id = properties.get("distinct_id")
    return distinct_id


def checked_distinct_id(fields: EventFields) -> Any:
    """`event_distinct_id` on checked fields (its properties are decoded only if needed)."""
    if fields.distinct_id is not None:
        return fields.distinct_id
    try:
        return _decode_properties(fields.properties).distinct_id
    except msgspec.ValidationError:  # properties is not an object
        return None


FUTURE_CUTOFF = timedelta(hours=23)  # FUTURE_EVENT_HOURS_CUTOFF_MILLIS


def moved_from_future(event: dict[str, Any], now: datetime) -> bool:
    """PostHog's capture replaces a timestamp more than 23 h after its `now` with `now`
    (parse_event_timestamp, FUTURE_EVENT_HOURS_CUTOFF_MILLIS; ingestion warning
    `event_timestamp_in_future`): True when `event`'s timestamp was so replaced."""
    moment = parse_utc(event.get("timestamp"))
    if moment is None or moment - now <= FUTURE_CUTOFF:
        return False
    event["timestamp"] = now.astimezone(UTC).isoformat()
    return True


def captured_distinct_id(distinct_id: Any) -> Any:
    """The distinct_id PostHog's capture passes on: NUL replaced with U+FFFD, then cut to its
    first 200 characters (rust/capture v0_request.rs, test
    `extract_distinct_id_trims_to_200_chars`). Two ids alike up to there are one person."""
    if isinstance(distinct_id, str):
        return distinct_id.replace("\0", "\ufffd")[:200]
    return distinct_id


@dataclass
class Batch:
    """A decoded request: its top-level fields and each event's raw bytes and checked fields."""

    payload: _Payload | None = None
    raw_events: list[msgspec.Raw] = field(default_factory=list)
    checked: list[EventFields] = field(default_factory=list)

    @classmethod
    def decode(cls, raw: bytes) -> Batch:
        """Raises msgspec.DecodeError for malformed JSON anywhere in the body."""
        try:
            payload = _decode_payload(raw)
        except msgspec.ValidationError:  # valid JSON, but not an object
            return cls()
        try:
            raw_events = _decode_raw_list(payload.batch)
        except msgspec.ValidationError:  # no batch, or not a list
            raw_events = []
        return cls(payload, raw_events)

    @property
    def historical_migration(self) -> bool:
        return self.payload is not None and self.payload.historical_migration is True

    def events(self) -> list[dict[str, Any]]:
        """The events as dicts (built on demand: tests that keep or filter events)."""
        return [orjson.loads(memoryview(raw)) for raw in self.raw_events]


def event_date(event: dict[str, Any]) -> date | None:
    moment = parse_utc(event.get("timestamp"))
    return moment.date() if moment is not None else None
