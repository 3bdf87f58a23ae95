"""Concurrent delivery with an ordered confirmation watermark: the heart of exactly-once resume.

Every input record gets a position (1, 2, ...). Mapped events join the open batch; a full
batch (by events or bytes) is dispatched to one of `concurrency` worker threads, which POST it,
split it on 400/413 to dead-letter only the bad events, record its aliases once PostHog
confirmed it, and mark it done. Batches finish out of order; the watermark is the last
position before the first unfinished batch. A Singer STATE received after position p is
emitted once the watermark reaches p, so Meltano never stores a bookmark past an unconfirmed
record. Dispatch blocks when too many batches are in flight, which bounds memory.

A STATE does not cut the open batch short: the tap may send one per export hour, and sparse hours
would otherwise make many small requests. It waits for the batch to fill, or, when input goes
quiet, at most `STATE_LINGER_SECONDS` before a helper thread sends the batch as it is. Pending
STATEs are kept only where the watermark can stop (one per batch), so their number stays bounded
however often they come.

Every safe STATE is written at once: since the watermark moves batch by batch, that is at most
one STATE line per confirmed batch, however many STATEs the tap sends (one per export hour).
A crash then re-sends at most what came after the last STATE the tap sent (the hour being
read) plus the batches in flight: nothing PostHog confirmed waits behind a held-back STATE.
Meltano stores each STATE line in its system database before it relays the next message
(14 to 17 ms each, measured on a quiet 2-core machine: benchmarks/README.md, where 104 STATEs
against 3 cost `meltano run` the same 0.92x as the plugins alone); at the rates PostHog agrees
for migrations (thousands of events a minute) it is a few STATEs a minute.

Before each STATE the durable files, the ledger and the registry's person and group
observations are synced (each sync merges every person seen since the last one), with the
delivery threads waiting, so that no batch is confirmed while a STATE is being vouched for.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from target_posthog.client import Answer, DeliveryAbandonedError, DeliveryError
from target_posthog.deadletter import DeadLetters, JsonLinesFile, LocalFileError
from target_posthog.ledger import Ledger
from target_posthog.profiles import PendingProfile, Profiles
from target_posthog.registry import AliasRegistry, PendingAlias, RegistryError

MAX_BATCH_BYTES = 5 * 1024 * 1024  # uncompressed; PostHog's /batch/ limit is 20 MiB
# How long a STATE may wait behind the open batch before that batch is sent unfilled.
STATE_LINGER_SECONDS = 1.0
_RECORDING_SECONDS = 5.0  # at most, for a confirmation being recorded when a stop abandons
# Sends encoded events joined by commas (the inside of the JSON array); PostHog's answer.
Sender = Callable[[memoryview], Answer]
# What an event stands for that must be recorded once PostHog confirms it.
Confirmable = PendingAlias | PendingProfile


@dataclass(eq=False)
class Batch:
    """Events of consecutive records [first_position, last_position], sent as one request.

    The events are kept in one buffer ("event,event,...,") with their offsets, not as a list
    of objects: one allocation per batch keeps memory flat with many batches in flight.
    """

    first_position: int
    last_position: int = 0
    buffer: bytearray = field(default_factory=bytearray)
    offsets: list[int] = field(default_factory=list)  # where each event starts in buffer
    aliases: dict[int, Confirmable] = field(default_factory=dict)  # event index -> its record
    done: bool = False

    @property
    def count(self) -> int:
        return len(self.offsets)

    def joined(self, start: int, stop: int) -> memoryview:
        """Events [start, stop) joined by commas, without copying."""
        end = self.offsets[stop] - 1 if stop < self.count else len(self.buffer) - 1
        return memoryview(self.buffer)[self.offsets[start] : end]


class Throttle:
    """Paces batches to `events_per_minute` smoothly: each batch waits for its time slot."""

    def __init__(self, events_per_minute: int | None, stopping: threading.Event) -> None:
        self.per_second = events_per_minute / 60 if events_per_minute else None
        self._next_slot = 0.0
        self._lock = threading.Lock()
        self._stopping = stopping

    def wait(self, events: int) -> None:
        if self.per_second is None:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_slot)
            self._next_slot = start + events / self.per_second
        if start > now:
            self._stopping.wait(start - now)


class Delivery:
    """Batches, sends and confirms events; emits each STATE once everything before it settled."""

    def __init__(
        self,
        *,
        sender: Sender,
        registry: AliasRegistry,
        profiles: Profiles,
        dead_letters: DeadLetters,
        emit_state: Callable[[dict], None],
        concurrency: int,
        batch_size: int,
        throttle: Throttle,
        stopping: threading.Event,
        logger: logging.Logger,
        durable_files: tuple[JsonLinesFile, ...] = (),
        ledger: Ledger | None = None,
    ) -> None:
        self._sender = sender
        self._registry = registry
        self._profiles = profiles
        self._dead_letters = dead_letters
        self._emit_state = emit_state
        self._batch_size = batch_size
        self._throttle = throttle
        self._stopping = stopping
        self._logger = logger
        # Stored before each STATE: what the STATE vouches for (profiles: the observations).
        self._durable: tuple[JsonLinesFile | Profiles, ...] = (
            dead_letters.file,
            *durable_files,
            profiles,
        )
        self._ledger = ledger
        self._lock = threading.Condition()
        self._received = 0
        # Guards the open batch: the main thread fills it, the linger thread may send it.
        self._open_lock = threading.Lock()
        self._open: Batch | None = None
        self._state_waits_since: float | None = None  # a STATE waits on the open batch
        self._unfinished: deque[Batch] = deque()  # dispatched, in position order
        self._pending_states: deque[tuple[int, dict]] = deque()
        self._last_emitted: dict | None = None
        self._in_progress = 0
        self._recording = 0  # batches whose confirmation is being recorded
        self._abandoned = False
        self.failure: DeliveryError | None = None
        self.events_sent = 0
        self.aliases_sent = 0
        self.profile_updates_sent = 0
        self.batches_split = 0
        self._queue: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        # In flight + 2 queued: every worker stays busy, memory stays flat.
        self._slots = threading.Semaphore(concurrency + 2)
        self._workers = [
            threading.Thread(target=self._work, name=f"posthog-delivery-{n}", daemon=True)
            for n in range(concurrency)
        ]
        for worker in self._workers:
            worker.start()
        threading.Thread(target=self._linger, name="posthog-state-linger", daemon=True).start()

    # --- main thread -------------------------------------------------------------------

    @property
    def received(self) -> int:
        """Records received so far."""
        return self._received

    def next_position(self) -> int:
        """Position of the record being handled; a record without events is settled at once."""
        self._received += 1
        return self._received

    def add(self, position: int, events: list[bytes], aliases: list[Confirmable | None]) -> None:
        """Queue one record's events (kept in one batch); `aliases[i]` belongs to `events[i]`."""
        size = len(events) + sum(map(len, events))
        with self._open_lock:
            batch = self._open
            if batch is not None and (
                batch.count + len(events) > self._batch_size
                or len(batch.buffer) + size > MAX_BATCH_BYTES
            ):
                self._dispatch_open()
                batch = None
            if batch is None:
                batch = self._open = Batch(first_position=position)
            buffer, offsets = batch.buffer, batch.offsets
            for index, event in enumerate(events):
                alias = aliases[index]
                if alias is not None:
                    batch.aliases[len(offsets)] = alias
                offsets.append(len(buffer))
                buffer += event
                buffer += b","
            batch.last_position = position
            if batch.count >= self._batch_size:
                self._dispatch_open()

    def flush(self) -> None:
        """Dispatch the open batch now (waits for a free slot: backpressure)."""
        with self._open_lock:
            self._dispatch_open()

    def _dispatch_open(self) -> None:
        """The open batch becomes unfinished and queued (caller holds `_open_lock`)."""
        self.raise_if_failed()
        batch = self._open
        if batch is None:
            return
        while not self._slots.acquire(timeout=0.2):
            self.raise_if_failed()
            if self._stopping.is_set():
                return  # nothing new is sent any more; the batch stays unvouched
        with self._lock:  # atomically: no longer open, now unfinished (watermark stays right)
            self._unfinished.append(batch)
            self._open = None
            self._state_waits_since = None
        self._queue.put(batch)

    def add_state(self, state: dict) -> None:
        """A STATE arrived: emit it once everything received before it is confirmed.

        It does not send the open batch early (see the module docstring). Of several STATEs
        between two batch starts only the newest is kept: the watermark, always just before a
        batch's first position or at the last one received, can never stop between them.
        """
        if self._ledger is not None:
            self._ledger.checkpoint(self._received, state)
        with self._open_lock, self._lock:
            pending = self._pending_states
            newest = self._open or (self._unfinished[-1] if self._unfinished else None)
            if pending and (newest is None or newest.first_position <= pending[-1][0]):
                pending.pop()
            pending.append((self._received, state))
            self._emit_ready_states()
            if pending and self._open is not None and self._state_waits_since is None:
                self._state_waits_since = time.monotonic()

    def _linger(self) -> None:
        """Helper thread: the open batch a STATE has waited on for long enough goes now."""
        while not self._stopping.wait(STATE_LINGER_SECONDS / 4):
            try:
                since = self._state_waits_since
                if since is not None and time.monotonic() - since >= STATE_LINGER_SECONDS:
                    self.flush()
            except DeliveryError:
                return  # the main thread raises it at its next call
            except (LocalFileError, RegistryError) as exc:  # stdout, a durable file, or the
                # registry (its ledger and profiles are written before a STATE): the run stops
                self._fail(DeliveryError(str(exc)))
                return

    def finish(self) -> None:
        """End of input: deliver everything, emit the last STATE, stop the workers."""
        self.settle()
        self._stop_workers()

    def settle(self) -> None:
        """Deliver everything received so far and emit the STATE that covers it."""
        self.flush()
        with self._lock:
            while (
                self._safe_position() < self._received
                and self.failure is None
                and not self._stopping.is_set()
            ):
                self._lock.wait(0.5)
            settled = self._safe_position() >= self._received
            if settled and self.failure is None:
                self._emit_ready_states()
        self.raise_if_failed()
        if not settled:  # a signal while waiting: queued batches were given up
            raise DeliveryAbandonedError("stopped before every batch was confirmed")

    def abandon(self, grace_seconds: float) -> None:
        """Stop now: send nothing new, give in-flight requests `grace_seconds`, emit what's safe.

        A request still unanswered then is left to its daemon thread: whatever PostHog makes
        of it, nothing more is recorded (the registry and files close next), and the next run
        sends those events again with the same uuids, which PostHog dedupes.
        """
        self._stopping.set()
        deadline = time.monotonic() + grace_seconds
        with self._lock:
            while self._in_progress and time.monotonic() < deadline:
                self._lock.wait(min(0.2, max(0.0, deadline - time.monotonic())))
            self._abandoned = True
            while self._recording and time.monotonic() < deadline + _RECORDING_SECONDS:
                self._lock.wait(0.05)  # a batch being recorded now finishes first
            self._emit_ready_states()
        self._stop_workers(wait_seconds=0.5)

    def raise_if_failed(self) -> None:
        if self.failure is not None:
            raise self.failure

    @property
    def in_flight(self) -> int:
        return len(self._unfinished)

    def _stop_workers(self, wait_seconds: float = 5.0) -> None:
        """Ask every worker to end; wait for them `wait_seconds` in all (daemon threads: one
        still waiting for PostHog does not keep the process alive)."""
        for _ in self._workers:
            self._queue.put(None)
        deadline = time.monotonic() + wait_seconds
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))

    # --- worker threads ----------------------------------------------------------------

    def _work(self) -> None:
        while (batch := self._queue.get()) is not None:
            try:
                if self.failure is None and not self._stopping.is_set():
                    with self._lock:
                        self._in_progress += 1
                    try:
                        self._deliver(batch)
                    finally:
                        with self._lock:
                            self._in_progress -= 1
                            self._lock.notify_all()
            except DeliveryError as exc:
                self._fail(exc)
            except (RegistryError, LocalFileError) as exc:
                self._fail(DeliveryError(str(exc)))
            except Exception as exc:  # a bug or a registry failure must stop the run, loudly
                self._logger.exception("delivery failed")
                self._fail(DeliveryError(f"delivery failed: {type(exc).__name__}: {exc}"))
            finally:
                self._slots.release()

    def _fail(self, exc: DeliveryError) -> None:
        with self._lock:
            if self.failure is None:
                self.failure = exc
            self._stopping.set()  # other workers give up their retries instead of going on
            self._lock.notify_all()

    def _deliver(self, batch: Batch) -> None:
        self._throttle.wait(batch.count)
        accepted = self._send_isolating(batch, 0, batch.count)
        confirmed = [alias for index, alias in batch.aliases.items() if index in accepted]
        aliases = [item for item in confirmed if isinstance(item, PendingAlias)]
        profiles = [item for item in confirmed if isinstance(item, PendingProfile)]
        with self._lock:
            if self._abandoned:  # answered after the stop's grace: see abandon()
                return
            self._recording += 1
        try:
            self._registry.record_confirmed(aliases)  # before the batch counts as settled
            self._profiles.record_sent(profiles)
        finally:
            with self._lock:
                self._recording -= 1
        with self._lock:
            self.events_sent += len(accepted) - len(confirmed)
            self.aliases_sent += len(aliases)
            self.profile_updates_sent += len(profiles)
            batch.done = True
            batch.buffer, batch.offsets = bytearray(), []  # free now; the object stays for the
            # watermark until every batch before it is done
            self._emit_ready_states()
            self._lock.notify_all()

    def _send_isolating(self, batch: Batch, start: int, stop: int) -> Sequence[int]:
        """Send events [start, stop); on 400/413 split in halves until refused ones stand alone.

        Returns the indexes PostHog accepted."""
        answer = self._sender(batch.joined(start, stop))
        if answer.accepted:
            return range(start, stop)
        if stop - start == 1:
            reason = (
                "event too large for PostHog (413)"
                if answer.status == 413
                else f"PostHog refused the event ({answer.status})"
            )
            event = bytes(batch.joined(start, stop))
            self._dead_letters.add_event(reason, event, answer.text)
            if self._ledger is not None:
                self._ledger.refused(event, reason)
            self._logger.warning("dead-lettered one event PostHog refused: %s", answer.text[:200])
            return range(0)
        with self._lock:
            self.batches_split += 1
        middle = (start + stop) // 2
        return [
            *self._send_isolating(batch, start, middle),
            *self._send_isolating(batch, middle, stop),
        ]

    # --- the watermark (caller holds self._lock) ---------------------------------------

    def _safe_position(self) -> int:
        while self._unfinished and self._unfinished[0].done:
            self._unfinished.popleft()
        if self._unfinished:
            return self._unfinished[0].first_position - 1
        if self._open is not None:
            return self._open.first_position - 1
        return self._received

    def _emit_ready_states(self) -> None:
        """Write the newest safe STATE, if any, once what it vouches for is on disk."""
        safe = self._safe_position()
        ready: tuple[int, dict] | None = None
        while self._pending_states and self._pending_states[0][0] <= safe:
            ready = self._pending_states.popleft()
        if ready is None:
            return
        position, state = ready
        if self._ledger is not None:  # what the STATE passes is in the ledger first
            self._ledger.commit(position)
        if state == self._last_emitted:
            return
        for durable in self._durable:  # what the STATE vouches for is on disk first
            durable.sync()
        self._emit_state(state)
        self._last_emitted = state
