"""A stand-in for PostHog's v0 batch capture endpoint (`POST /batch/`).

It keeps the contract of shared/reference/posthog-capture-api.md: gzip (by header, query hint or
magic bytes) or plain JSON; 401 for a missing or wrong api_key; a 400 with a plain-text message
rejects the whole batch (nothing stored); 413 over 20 MiB; 200 `{"status": "Ok"}`. Tests inject
faults, take it down for a while, and read what arrived; `unique_events()` collapses duplicates
the way PostHog's ReplacingMergeTree eventually does.

Cheap enough to share a benchmark machine with the plugins it measures: msgspec checks the whole
body's JSON but builds only the few fields capture validates (each event's other properties are
skipped, not materialised), and it sees each event's raw bytes, which is what the per-event size
limit applies to (capture_payload.py). Whole events are built as dicts only when a test keeps
them or filters on them.
"""

from __future__ import annotations

import itertools
import threading
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import msgspec
import orjson
from isal import isal_zlib  # ISA-L's inflate is ~2.5x zlib's; the target depends on it too

from tests.testbed.capture_payload import (
    Batch,
    CaptureRequest,
    RejectedError,
    captured_distinct_id,
    checked_distinct_id,
    decode_event_fields,
    event_date,
    event_distinct_id,
    is_valid_uuid,
    moved_from_future,
)
from tests.testbed.faults import Fault, FaultQueue
from tests.testbed.hogql import QUERY_PATH, QueryApi
from tests.testbed.httpserver import Handler, StandInServer
from tests.testbed.persons import PersonsModel

EventPredicate = Callable[[dict[str, Any]], bool]

_BATCH_PATHS = ("/batch", "/batch/")
_GZIP_MAGIC = b"\x1f\x8b"
_ALIAS_EVENTS = frozenset({"$create_alias", "$identify", "$merge_dangerously"})
_OK = orjson.dumps({"status": "Ok"})
_DECODE_ERRORS = cast(
    "tuple[type[Exception], ...]", (zlib.error, isal_zlib.error, msgspec.DecodeError)
)


class PostHogStandIn(StandInServer):
    """PostHog capture on 127.0.0.1; use as a context manager, point a target at `.url`."""

    def __init__(
        self,
        api_key: str = "phc_test_key",
        latency: float = 0.0,
        keep_events: bool = True,
        model_persons: bool = True,
        personal_api_key: str = "phx_test_personal_key",
        project_id: int = 4242,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        # The query API (HogQL counts of the stored events): tests/testbed/hogql.py.
        self.query_api = QueryApi(personal_api_key, project_id)
        self.latency = latency  # seconds each request takes (other requests run meanwhile)
        self.keep_events = keep_events
        self.max_event_bytes = 1_000_000
        self.max_body_bytes = 20 * 1024 * 1024
        self.faults = FaultQueue()
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._down_until = 0.0
        self._predicates: list[EventPredicate] = []
        self._events: list[dict[str, Any]] = []
        # Also keep the bytes, as received, of each stored event this accepts (None: of none).
        self.keep_raw_events: Callable[[bytes], bool] | None = None
        self._raw_events: list[bytes] = []
        self._requests: list[CaptureRequest] = []
        # A dict of str keys, not a set: CPython leaves such a dict out of the cyclic GC, while a
        # set of a million uuids makes every full collection walk it (~40 ms per 1M entries).
        self._uuids: dict[str, None] = {}
        self._event_count = 0
        self._duplicate_uuids = 0
        # Persons and groups, built from the accepted events as PostHog's ingestion builds them
        # (model_persons=False: not built, for a benchmark's baseline).
        self.people = PersonsModel()
        self.model_persons = model_persons
        # Hooks for crash drills, called on the request's own thread: `on_received(seq)` when a
        # batch request arrives (before faults), `on_stored(request)` once its events are stored
        # and before the answer goes out, so a test can kill the client between the two.
        self.on_received: Callable[[int], None] | None = None
        self.on_stored: Callable[[CaptureRequest], None] | None = None

    # ---- test controls -------------------------------------------------------------------

    def inject(self, fault: Fault, times: int = 1) -> None:
        """Have the next `times` batch requests misbehave as `fault` (FIFO with other faults)."""
        self.faults.inject(fault, times)

    def clear_faults(self) -> None:
        """Drop the faults not yet consumed."""
        self.faults.clear()

    def down_for(self, seconds: float) -> None:
        """Answer 503 to every request for the next `seconds`."""
        self._down_until = time.monotonic() + seconds

    def reject_if(self, predicate: EventPredicate | None) -> None:
        """400 any batch that has an event matching `predicate` (None clears all predicates)."""
        with self._lock:
            if predicate is None:
                self._predicates.clear()
            else:
                self._predicates.append(predicate)

    # ---- observations --------------------------------------------------------------------

    @property
    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._events)

    @property
    def raw_events(self) -> list[bytes]:
        """The stored events' bytes as sent, those `keep_raw_events` accepts (`events` are
        parsed by orjson, which turns integers wider than 64 bits into floats)."""
        with self._lock:
            return list(self._raw_events)

    @property
    def requests(self) -> list[CaptureRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def event_count(self) -> int:
        """Accepted events, duplicates included (kept with keep_events=False too)."""
        with self._lock:
            return self._event_count

    @property
    def duplicate_uuid_count(self) -> int:
        """Accepted events whose uuid had been accepted before."""
        with self._lock:
            return self._duplicate_uuids

    def accepted_uuids(self) -> set[str]:
        with self._lock:
            return set(self._uuids)

    def unique_events(self) -> list[dict[str, Any]]:
        """Accepted events collapsed on (date(timestamp), event, distinct_id, uuid), as PostHog's
        ReplacingMergeTree does after merges; the last one received wins, in first-seen order.
        Events without a uuid never collapse (PostHog gives each a fresh one)."""
        collapsed: dict[Any, dict[str, Any]] = {}
        for position, event in enumerate(self.events):
            event_uuid = event.get("uuid")
            if event_uuid is None:
                key: Any = ("no-uuid", position)
            else:
                key = (
                    event_date(event),
                    event.get("event"),
                    str(event_distinct_id(event)),
                    event_uuid,
                )
            collapsed[key] = event  # re-assigning keeps the first position, takes the last value
        return list(collapsed.values())

    def remove_events(self, predicate: EventPredicate) -> int:
        """Delete the stored events matching `predicate` (as if PostHog lost them); how many."""
        with self._lock:
            kept = [event for event in self._events if not predicate(event)]
            removed = len(self._events) - len(kept)
            self._events = kept
            self._uuids = {e["uuid"]: None for e in kept if isinstance(e.get("uuid"), str)}
            return removed

    def aliases(self) -> list[dict[str, Any]]:
        """The identity-merging events received ($create_alias, $identify, $merge_dangerously)."""
        return [event for event in self.events if event.get("event") in _ALIAS_EVENTS]

    def holdings(self) -> str:
        """One line: what the stand-in holds now, read in one snapshot under its lock (the
        persons model is not thread-safe on its own, and counts read one by one while batches
        arrive do not add up)."""
        with self._lock:
            aliases = sum(1 for event in self._events if event.get("event") in _ALIAS_EVENTS)
            return (
                f"PostHog stand-in holds {self._event_count:,} events incl. {aliases:,} aliases "
                f"({len(self._uuids):,} distinct uuids), {len(self.people.persons()):,} "
                f"persons, {len(self.people.groups()):,} groups; {len(self._requests):,} batch "
                "requests"
            )

    # ---- serving -------------------------------------------------------------------------

    def handle_batch(self, handler: Handler) -> None:
        received_at = time.time()
        url = urlsplit(handler.path)
        body = handler.read_body()
        if url.path not in _BATCH_PATHS:
            handler.answer(404, "not found")
            return
        seq = next(self._seq)
        if self.on_received is not None:
            self.on_received(seq)
        fault = self.faults.take()
        compression = parse_qs(url.query).get("compression", [""])[0]
        gzipped = (
            handler.headers.get("Content-Encoding", "").lower() == "gzip"
            or compression.startswith("gzip")
            or body[:2] == _GZIP_MAGIC
        )
        batch = Batch()
        decode_error = ""
        try:
            batch = Batch.decode(isal_zlib.decompress(body, wbits=31) if gzipped else body)
        except _DECODE_ERRORS as exc:
            decode_error = f"failed to decode request: {exc}"
        with self._lock:
            predicates = list(self._predicates)
        events = batch.events() if self.keep_events or predicates else []
        historical = batch.historical_migration
        batch_uuids = tuple(
            e["uuid"] for e in events if isinstance(e, dict) and isinstance(e.get("uuid"), str)
        )

        def finish(status: int | None, stored: bool = False) -> None:
            # Logged before answering: a client may read .requests as soon as it has the answer.
            record = CaptureRequest(
                seq, received_at, status, len(batch.raw_events), len(body), gzipped, historical,
                batch_uuids, fault, stored,
            )  # fmt: skip
            with self._lock:
                self._requests.append(record)
            if stored and self.on_stored is not None:
                self.on_stored(record)

        if self.latency:
            time.sleep(self.latency)
        if fault is not None:
            if fault.kind == "drop":
                finish(None)
                handler.hang_up()
                return
            if fault.kind == "status":
                retry_after = fault.retry_after_header()
                headers = {"Retry-After": retry_after} if retry_after else None
                finish(fault.code)
                handler.answer(fault.code or 500, f"injected status {fault.code}", headers=headers)
                return
            if fault.kind == "delay":
                time.sleep(fault.seconds)
        if time.monotonic() < self._down_until:
            finish(503)
            handler.answer(503, "service unavailable")
            return

        try:
            if len(body) > self.max_body_bytes:
                raise RejectedError(413, "payload too large")
            if decode_error:
                raise RejectedError(400, decode_error)
            self._validate(batch, events, predicates)
        except RejectedError as rejected:
            finish(rejected.status)
            handler.answer(rejected.status, rejected.message)
            return

        self._store(batch, events)
        if fault is not None and fault.kind == "lose_ack":
            finish(None, stored=True)
            handler.hang_up()
            return
        finish(200, stored=True)
        handler.answer(200, _OK, content_type="application/json")

    def persons_of(self, table: str, ids: list[str]) -> list[list[Any]]:
        """The query API's answer to the target's keep-mode lookups: [distinct_id, its
        person's properties as JSON text] (`table` person_distinct_ids), or [key, a group's
        properties] for every group type holding the key (`groups`)."""
        with self._lock:
            if table == "groups":
                wanted = set(ids)
                found = [(key, props) for (_, key), props in self.people.groups().items()
                         if key in wanted]  # fmt: skip
            else:
                people = [(i, self.people.person(i)) for i in ids]
                found = [(i, person.properties) for i, person in people if person is not None]
        return [[i, orjson.dumps(props, default=str).decode()] for i, props in found]

    def _validate(
        self, batch: Batch, events: list[dict[str, Any]], predicates: list[EventPredicate]
    ) -> None:
        """Checks in capture's order; fills `batch.checked` with every event's checked fields."""
        payload = batch.payload
        if payload is None:
            raise RejectedError(400, "failed to decode request: body is not a JSON object")
        api_key = payload.api_key or payload.token
        if not api_key or api_key != self.api_key:
            raise RejectedError(401, "invalid or missing api_key")
        if not batch.raw_events:
            raise RejectedError(400, "empty batch")
        checked = batch.checked
        for raw in batch.raw_events:
            try:
                fields = decode_event_fields(raw)
            except msgspec.ValidationError:
                raise RejectedError(
                    400, "failed to decode request: event is not an object"
                ) from None
            if fields.api_key is not None and fields.api_key != api_key:
                raise RejectedError(401, "multiple api_keys in one batch")
            name = fields.event
            if not isinstance(name, str) or not name:
                raise RejectedError(400, "missing event name")
            distinct_id = checked_distinct_id(fields)
            if distinct_id is None or distinct_id == "":
                raise RejectedError(400, "missing or empty distinct_id")
            if fields.uuid is not None and not is_valid_uuid(fields.uuid):
                raise RejectedError(400, f"invalid uuid: {fields.uuid!r}")
            if len(raw) > self.max_event_bytes:
                raise RejectedError(400, "maximum event size exceeded")
            checked.append(fields)
        for event in events if predicates else ():
            for predicate in predicates:
                if predicate(event):
                    raise RejectedError(400, f"event rejected: {event.get('event')}")

    def _store(self, batch: Batch, events: list[dict[str, Any]]) -> None:
        with self._lock:
            self._event_count += len(batch.checked)
            seen = self._uuids
            fresh = []  # events whose uuid PostHog's ingestion has not seen yet
            for fields in batch.checked:
                event_uuid = fields.uuid
                if event_uuid is not None:
                    if event_uuid in seen:
                        self._duplicate_uuids += 1
                        continue
                    seen[event_uuid] = None
                fresh.append(fields)
            if self.model_persons:
                # The strict reading of PostHog's ingestion: an event whose uuid it has seen
                # already is dropped before person processing (PostHog PR 34574 added a Redis
                # deduplication step by uuid; whether it drops or only counts is not
                # verified). So a re-sent event changes no person or group here: a target
                # must never give two different person or group updates one uuid.
                ingest = self.people.ingest
                for fields in fresh:
                    ingest(fields.event, captured_distinct_id(checked_distinct_id(fields)), fields)
            if self.keep_events:
                now = datetime.now(UTC)
                for event in events:
                    if isinstance(event, dict) and moved_from_future(event, now):
                        self.people.warnings.append(
                            ("event_timestamp_in_future", str(event.get("uuid")))
                        )
                self._events.extend(events)
            keep_raw = self.keep_raw_events
            if keep_raw is not None:
                self._raw_events.extend(bytes(r) for r in batch.raw_events if keep_raw(bytes(r)))


class _PostHogHandler(Handler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        owner = self.server.owner
        assert isinstance(owner, PostHogStandIn)
        query = QUERY_PATH.match(urlsplit(self.path).path)
        if query is not None:
            owner.query_api.handle(
                self, query[1], self.read_body(), lambda: owner.events, owner.persons_of
            )
            return
        owner.handle_batch(self)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.answer(405 if self.path.startswith("/batch") else 404, "use POST")


PostHogStandIn.handler_class = _PostHogHandler
