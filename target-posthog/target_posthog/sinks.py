"""The events sink: map each record, encode its events once, claim its alias, hand to delivery.

Any stream is read as Amplitude export records (tap-amplitude's `events`, or another tap's).
Batching, sending and STATE belong to the target's `Delivery`, shared by all sinks, because
singer-sdk replaces sinks on schema changes and drains them in parallel threads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from singer_plugin_common import exact_json
from singer_sdk.sinks import BatchSink, RecordSink

from target_posthog import exact_numbers
from target_posthog.delivery import Confirmable
from target_posthog.event_keys import TIME_SOURCE_PROPERTY, parse_time
from target_posthog.extras import EXTRA_FIELD, as_exported, with_extra_fields
from target_posthog.identity import alias_event, can_alias, readdress
from target_posthog.mapping import UnmappableError, map_record
from target_posthog.registry import Claim, PendingAlias

if TYPE_CHECKING:
    from collections.abc import Sequence

    from singer_sdk.sinks.core import BaseJSONSchemaValidator

    from target_posthog.target import TargetPostHog

# posthog-python refuses events over 900 KiB; PostHog's own cap is about 1 MB per event.
MAX_EVENT_BYTES = 900 * 1024


def encode_event(event: dict[str, Any]) -> bytes:
    """An event's JSON bytes, as PostHog receives them."""
    # default: Decimal/datetime from other taps' paths; wide integers written exactly.
    return exact_json.dumps(event, default=str)


class EventsSink(BatchSink):
    """Maps Amplitude records to PostHog events; delivery and STATE are the target's."""

    def __init__(
        self,
        target: TargetPostHog,
        stream_name: str,
        schema: dict,
        key_properties: Sequence[str] | None,
    ) -> None:
        super().__init__(target, stream_name, schema, key_properties)
        self._delivery = target.delivery
        self._registry = target.registry
        self._profiles = target.profiles
        self._dead_letters = target.dead_letters
        self._ledger = target.ledger
        self._notes = target.mapping_notes
        self._latest = target.latest_event_time
        # tap-amplitude's stream: its dead letters hold the record as exported (extras.py).
        self._from_tap_amplitude = EXTRA_FIELD in (schema.get("properties") or {})

    def get_validator(self) -> BaseJSONSchemaValidator | None:
        """No JSON-schema validation: too slow per record; the mapping checks what it needs."""
        return None

    def _singer_validate_message(self, record: dict) -> None:
        """A record without its key property (``uuid``) is still an event: the mapping derives
        its uuid by the documented rule (event_keys.record_uuid), so it is not refused."""

    def _parse_timestamps_in_record(self, record: dict, schema: dict, treatment: Any) -> None:
        """Times stay as received: the mapping reads them, and a dead letter must hold the
        record as exported (the SDK would parse them, or fail on one that is not a time)."""

    @property
    def is_full(self) -> bool:
        """Never: `Delivery` cuts batches by events and bytes itself."""
        return False

    def process_record(self, record: dict, context: dict) -> None:
        """Called by singer-sdk's own record path (used when stream maps are configured)."""
        self.handle(record)

    def handle(self, record: dict[str, Any]) -> None:
        """The per-record hot path: map, encode, alias, queue."""
        position = self._delivery.next_position()
        record = with_extra_fields(record)
        try:
            mapped = map_record(record, self._latest)
        except UnmappableError as exc:
            self._dead_letter(exc.reason, record, parse_time(record.get("event_time")))
            return
        if mapped.notes:
            self._notes.add(mapped.notes, self.stream_name, record)
        events = mapped.events
        user_id = mapped.user_id
        if user_id is not None:
            distinct_id = self._registry.user_distinct_id(
                user_id, mapped.timestamp, mapped.device_id, amplitude_id_of(record)
            )
            if distinct_id != user_id:  # the id is another user's device: see registry.py
                readdress(events, user_id, distinct_id)
                person_key = distinct_id if mapped.person_key == user_id else mapped.person_key
                mapped = mapped._replace(user_id=distinct_id, person_key=person_key)
        elif mapped.device_id is not None:  # anonymous: the device's id, unless a user holds it
            device = mapped.device_id
            distinct_id = self._registry.device_distinct_id(device, mapped.timestamp)
            if distinct_id != device:
                readdress(events, device, distinct_id)
                person_key = distinct_id if mapped.person_key == device else mapped.person_key
                mapped = mapped._replace(person_key=person_key)
            amplitude_id = amplitude_id_of(record)
            if amplitude_id is not None and mapped.person_key is not None:
                # Amplitude attributes the row to the user its amplitude_id names (a shared
                # device's later user): so do its properties (user_ids.py).
                owner = self._registry.user_of_amplitude_id(amplitude_id)
                if owner is not None:
                    mapped = mapped._replace(person_key=owner)
        if len(events) == 1:  # nearly every record: no comprehension, no max()
            try:
                first = orjson.dumps(events[0], default=exact_numbers.default)
            except orjson.JSONEncodeError:  # a wider-than-64-bit integer (rare)
                first = encode_event(events[0])
            encoded = [first]
            too_big = len(first)
        else:
            encoded = [encode_event(event) for event in events]
            too_big = max(map(len, encoded))
        # The record's user and group properties are separate updates (profiles.py): kept even
        # when the event itself is too large for PostHog.
        self._profiles.observe(mapped)
        if too_big > MAX_EVENT_BYTES:
            self._dead_letter(
                f"event is {too_big} bytes once mapped; PostHog accepts at most "
                f"about {MAX_EVENT_BYTES} bytes per event",
                record,
                # In the ledger at its event_time, where Amplitude counts it, as every dead
                # letter (not at the time field it would have been sent at).
                parse_time(record.get("event_time")),
                ledger_reason="event too large for PostHog",
            )
            return
        by_event_time = TIME_SOURCE_PROPERTY not in events[0].get("properties", ())
        self._ledger.read(record, len(encoded), mapped.timestamp, by_event_time)
        aliases: list[Confirmable | None] = [None] * len(encoded)
        device_id, user_id = mapped.device_id, mapped.user_id
        if (
            device_id is not None
            and user_id is not None
            and can_alias(device_id, user_id)
            and self._registry.claim(device_id, user_id, mapped.timestamp) is Claim.NEW
        ):
            # Before the event it ties, in the same batch: confirmed (and recorded) together.
            encoded.insert(0, encode_event(alias_event(device_id, user_id, mapped.timestamp)))
            aliases.insert(0, PendingAlias(device_id, user_id, mapped.timestamp))
        self._delivery.add(position, encoded, aliases)

    def _dead_letter(
        self,
        reason: str,
        record: dict[str, Any],
        event_time: str | None,
        ledger_reason: str | None = None,
    ) -> None:
        letter = as_exported(record) if self._from_tap_amplitude else record
        self._dead_letters.add_record(self.stream_name, reason, letter)
        self._ledger.dead_letter(record, ledger_reason or reason, event_time)

    def process_batch(self, context: dict) -> None:
        """singer-sdk drains (end of input, max record age): send the open batch now.

        Never blocks on confirmation: the target routes every STATE through the watermark.
        """
        self._delivery.flush()


def amplitude_id_of(record: dict[str, Any]) -> str | None:
    """The record's `amplitude_id` (Amplitude's id of the user) as text, or None."""
    value = record.get("amplitude_id")
    if value is None or isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    return str(value) or None


class UnreadableLinesSink(RecordSink):
    """tap-amplitude's `unreadable_lines`: each line kept byte for byte (setaside.py)."""

    def __init__(
        self,
        target: TargetPostHog,
        stream_name: str,
        schema: dict,
        key_properties: Sequence[str] | None,
    ) -> None:
        super().__init__(target, stream_name, schema, key_properties)
        self._set_aside = target.set_aside
        self._dead_letters = target.dead_letters
        self._ledger = target.ledger

    def process_record(self, record: dict, context: dict) -> None:
        self._ledger.unreadable(record.get("hour"))
        try:
            self._set_aside.add(record)
        except ValueError as exc:
            self._dead_letters.add_record(self.stream_name, str(exc), record)
