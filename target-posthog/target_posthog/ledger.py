"""The migration's ledger: per event-time hour, what was read and what became of it, across runs.

`target-posthog-verify` compares it with Amplitude's and PostHog's own counts. The migration
keeps it in the registry, beside the aliases, so it survives every run and needs no other file.

Counts are kept per (upload hour, event hour): the tap reads by upload hour (Amplitude's
`server_upload_time`) and resumes at a bookmark that is an upload-hour boundary, so a run that
reads an upload hour again has read all of it again. The first time a run writes an upload hour
it replaces everything earlier runs wrote for it: re-reads never count twice.

Hot path (one call per record) only adds to in-memory counters. A STATE arriving from the tap
closes a segment (`checkpoint`); once the delivery watermark passes it, `commit` writes the
segment's cumulative counts in one transaction, before that STATE is released. So the ledger
never holds a record that the bookmark Meltano stores does not cover, and never lacks one it
does (a crash in between re-reads the hour, which replaces the counts with equal ones).
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import TYPE_CHECKING, Any

import orjson

from target_posthog.event_keys import parse_time
from target_posthog.setaside import STREAM_NAME as UNREADABLE_LINES

if TYPE_CHECKING:
    from target_posthog.registry_store import Database

# The tables, as migration 4 of the registry's schema (registry_schema.py). Hours are
# `YYYY-MM-DDTHH` in UTC; '' means unknown (no upload time, no event time).
# - ledger_hours: records read, PostHog events made of them (aliases aside: the registry's
#   `aliases` table holds those), records that are person/group update rows ($identify,
#   $groupidentify), and unreadable lines set aside (event hour '').
# - ledger_dead_letters: records not sent, by reason.
# - ledger_refused: events PostHog refused (400 after isolation), by uuid (idempotent).
# - ledger_bookmarks: the tap's bookmark (`replication_key_value`) in the last released STATE
#   (dropped by migration 7: ledger_reads below).
LEDGER_TABLES = (
    """CREATE TABLE ledger_hours (
        upload_hour TEXT NOT NULL,
        event_hour TEXT NOT NULL,
        records_read BIGINT NOT NULL,
        events_sent BIGINT NOT NULL,
        updates BIGINT NOT NULL,
        unreadable BIGINT NOT NULL,
        written_at TEXT NOT NULL,
        PRIMARY KEY (upload_hour, event_hour)
    ){without_rowid}""",
    """CREATE TABLE ledger_dead_letters (
        upload_hour TEXT NOT NULL,
        event_hour TEXT NOT NULL,
        reason TEXT NOT NULL,
        records BIGINT NOT NULL,
        PRIMARY KEY (upload_hour, event_hour, reason)
    ){without_rowid}""",
    """CREATE TABLE ledger_refused (
        uuid TEXT PRIMARY KEY,
        event_hour TEXT NOT NULL,
        reason TEXT NOT NULL,
        written_at TEXT NOT NULL
    ){without_rowid}""",
    """CREATE TABLE ledger_bookmarks (
        stream TEXT PRIMARY KEY,
        bookmark TEXT NOT NULL,
        released_at TEXT NOT NULL
    ){without_rowid}""",
)
# Migration 7: what each run read, as a span of upload hours, replacing ledger_bookmarks (one
# bookmark per stream cannot tell parallel range jobs apart).
# - ledger_reads: per stream, the upload hours [read_from, read_to) a run (or a run and the runs
#   resuming it) has read and released: read_from is where the run started (the bookmark it
#   resumed from, else the first upload hour it read), read_to its newest released bookmark.
LEDGER_READS_TABLES = (
    """CREATE TABLE ledger_reads (
        stream TEXT NOT NULL,
        read_from TEXT NOT NULL,
        read_to TEXT NOT NULL,
        released_at TEXT NOT NULL,
        PRIMARY KEY (stream, read_from)
    ){without_rowid}""",
    "DROP TABLE ledger_bookmarks",
)
# Migration 9: ledger_hours.no_event_time, records among records_read whose event_time is
# missing or unusable: their events carry another field's time (`$amplitude_timestamp_from`)
# and sit at that hour in PostHog, but Amplitude's charts count by event_time (counting-
# apis.md), so they are not that hour's chart events.
LEDGER_NO_EVENT_TIME = (
    "ALTER TABLE ledger_hours ADD COLUMN no_event_time BIGINT NOT NULL DEFAULT 0",
)
# Migration 12: ledger_moved, among those records, the ones whose event_time is a time but out
# of range (before 1970, or more than 23 h after the run's start: event_keys.py), by the hour of
# that event_time (`chart_hour`): Amplitude's charts count them there, the migration delivered
# them at `event_hour`. Person/group update rows are left out (not chart events).
LEDGER_MOVED_TABLES = (
    """CREATE TABLE ledger_moved (
        upload_hour TEXT NOT NULL,
        event_hour TEXT NOT NULL,
        chart_hour TEXT NOT NULL,
        records BIGINT NOT NULL,
        PRIMARY KEY (upload_hour, event_hour, chart_hour)
    ){without_rowid}""",
)
_UPSERT_HOUR = (
    "INSERT INTO ledger_hours (upload_hour, event_hour, records_read, events_sent, updates, "
    "unreadable, no_event_time, written_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (upload_hour, event_hour) DO UPDATE SET records_read = excluded.records_read, "
    "events_sent = excluded.events_sent, updates = excluded.updates, "
    "unreadable = excluded.unreadable, no_event_time = excluded.no_event_time, "
    "written_at = excluded.written_at"
)
_UPSERT_DEAD = (
    "INSERT INTO ledger_dead_letters VALUES (?, ?, ?, ?) "
    "ON CONFLICT (upload_hour, event_hour, reason) DO UPDATE SET records = excluded.records"
)
_UPSERT_MOVED = (
    "INSERT INTO ledger_moved VALUES (?, ?, ?, ?) "
    "ON CONFLICT (upload_hour, event_hour, chart_hour) DO UPDATE SET records = excluded.records"
)
_INSERT_REFUSED = "INSERT INTO ledger_refused VALUES (?, ?, ?, ?) ON CONFLICT (uuid) DO NOTHING"
_UPSERT_READ = (
    "INSERT INTO ledger_reads VALUES (?, ?, ?, ?) ON CONFLICT (stream, read_from) DO UPDATE SET "
    "read_to = excluded.read_to, released_at = excluded.released_at"
)

PERSON_GROUP_UPDATES = frozenset(("$identify", "$groupidentify"))
_READ, _SENT, _UPDATES, _UNREADABLE, _NO_EVENT_TIME = range(5)


def hour_of(text: object) -> str:
    """`YYYY-MM-DDTHH` of a UTC time written `YYYY-MM-DD HH:...` or `YYYY-MM-DDTHH:...`."""
    if not isinstance(text, str) or len(text) < 13 or text[4] != "-" or text[10] not in " T":
        return ""
    return f"{text[:10]}T{text[11:13]}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def state_bookmarks(state: dict[str, Any]) -> dict[str, str]:
    """`{stream: replication_key_value}` from a singer-sdk STATE (empty if it has none)."""
    found: dict[str, str] = {}
    bookmarks = state.get("bookmarks")
    if isinstance(bookmarks, dict):
        for stream, entry in bookmarks.items():
            if isinstance(entry, dict) and isinstance(entry.get("replication_key_value"), str):
                found[str(stream)] = entry["replication_key_value"]
    return found


class Ledger:
    """In-memory counters of one run, written to the registry at each released STATE.

    `database` is None for a dry run: counters are kept, nothing is written.
    Main thread: `read`, `dead_letter`, `unreadable`, `checkpoint`. Delivery threads:
    `refused`, `commit` (under the delivery's lock).
    """

    def __init__(self, database: Database | None) -> None:
        self._database = database
        # (raw upload hour prefix, event hour prefix) -> [read, sent, updates, unreadable,
        # no event time]
        self._segment: dict[tuple[str, str], list[int]] = {}
        self._dead_segment: dict[tuple[str, str, str], int] = {}
        self._totals: dict[tuple[str, str], list[int]] = {}
        self._dead_totals: dict[tuple[str, str, str], int] = {}
        # (upload hour, event hour, chart hour) -> records: as the dead letters, by chart hour
        self._moved_segment: dict[tuple[str, str, str], int] = {}
        self._moved_totals: dict[tuple[str, str, str], int] = {}
        # (position, hours, dead letters, moved, {stream: (read_from, bookmark)}) per STATE
        self._pending: list[tuple[int, dict, dict, dict, dict[str, tuple[str, str]]]] = []
        self._read_from: dict[str, str] = {}  # stream -> where this run started reading
        self._refused: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._claimed: set[str] = set()  # upload hours this run has replaced in the table
        # For a record or line without a readable upload hour: the hour the tap is reading,
        # i.e. the newest bookmark (an hour boundary) a STATE carried ('' before the first).
        self._reading_hour = ""

    # --- main thread, per record -----------------------------------------------------------

    def read(
        self, record: dict[str, Any], events: int, event_time: str, by_event_time: bool = True
    ) -> None:
        """A record mapped to `events` PostHog events (aliases aside), at `event_time`;
        `by_event_time` False: that time is not the record's event_time (missing or unusable)."""
        upload = record.get("server_upload_time")
        key = (upload[:13] if upload.__class__ is str else "", event_time[:13])
        counts = self._segment.get(key)
        if counts is None:
            counts = self._segment[key] = [0, 0, 0, 0, 0]
        counts[_READ] += 1
        counts[_SENT] += events
        if record.get("event_type") in PERSON_GROUP_UPDATES:
            counts[_UPDATES] += 1
        if not by_event_time:
            counts[_NO_EVENT_TIME] += 1
            chart_time = parse_time(record.get("event_time"))  # out of range, if a time
            if chart_time and record.get("event_type") not in PERSON_GROUP_UPDATES:
                moved = (*key, chart_time[:13])
                self._moved_segment[moved] = self._moved_segment.get(moved, 0) + 1

    def dead_letter(self, record: dict[str, Any], reason: str, event_time: str | None) -> None:
        """A record read but not sent (`event_time`: its UTC time if it has one)."""
        self.read(record, 0, event_time or "")
        upload = record.get("server_upload_time")
        key = (upload[:13] if isinstance(upload, str) else "", (event_time or "")[:13], reason)
        self._dead_segment[key] = self._dead_segment.get(key, 0) + 1

    def unreadable(self, upload_hour: object) -> None:
        """A line of the export set aside as unreadable: tap-amplitude's `unreadable_lines`
        record's `hour` (its file's upload hour, RFC 3339 UTC), else the hour being read."""
        key = (upload_hour[:13] if isinstance(upload_hour, str) else "", "")
        counts = self._segment.get(key)
        if counts is None:
            counts = self._segment[key] = [0, 0, 0, 0, 0]
        counts[_UNREADABLE] += 1

    def refused_by_sdk(self, stream: str, record: object, kind: str) -> None:
        """A record singer-sdk refused before any sink saw it (dead-lettered by the target):
        an unreadable line if it came on `unreadable_lines`, else a record not sent."""
        found = record if isinstance(record, dict) else {}
        if stream == UNREADABLE_LINES:
            self.unreadable(found.get("hour"))
        else:
            self.dead_letter(
                found, f"refused by singer-sdk: {kind}", parse_time(found.get("event_time"))
            )

    def checkpoint(self, position: int, state: dict[str, Any]) -> None:
        """A STATE arrived after record `position`: close the segment it vouches for."""
        # Totals by the normal hour keys: two spellings of one upload hour (Amplitude's
        # "2024-03-01 05" in records, RFC 3339 "2024-03-01T05" in set-aside lines) add up.
        hours: dict[tuple[str, str], tuple[int, ...]] = {}
        for raw_key, counts in self._segment.items():
            key = self._normal(raw_key)
            total = self._totals.get(key)
            if total is None:
                total = self._totals[key] = [0, 0, 0, 0, 0]
            for index, count in enumerate(counts):
                total[index] += count
            hours[key] = tuple(total)
        dead: dict[tuple[str, str, str], int] = {}
        for (upload, event, reason), count in self._dead_segment.items():
            dead_key = (*self._normal((upload, event)), reason)
            dead[dead_key] = self._dead_totals[dead_key] = (
                self._dead_totals.get(dead_key, 0) + count
            )
        moved: dict[tuple[str, str, str], int] = {}
        for (upload, event, chart), count in self._moved_segment.items():
            moved_key = (*self._normal((upload, event)), hour_of(chart))
            moved[moved_key] = self._moved_totals[moved_key] = (
                self._moved_totals.get(moved_key, 0) + count
            )
        self._segment, self._dead_segment, self._moved_segment = {}, {}, {}
        bookmarks = state_bookmarks(state)
        if bookmarks:
            self._reading_hour = max(bookmarks.values())[:13]
        reads: dict[str, tuple[str, str]] = {}
        for stream, bookmark in bookmarks.items():
            hour = hour_of(bookmark)
            if not hour:
                continue
            if stream not in self._read_from:
                # The first STATE carries the bookmark the run resumed from (singer-sdk writes
                # the incoming state first); a first run's first STATE comes after its first
                # hour, so the records read before it say where it started.
                read = [upload for upload, _ in self._totals if upload]
                self._read_from[stream] = min([hour, *read])
            reads[stream] = (self._read_from[stream], hour)
        with self._lock:
            self._pending.append((position, hours, dead, moved, reads))

    def _normal(self, key: tuple[str, str]) -> tuple[str, str]:
        """(upload hour, event hour) as `YYYY-MM-DDTHH`; an upload time missing or unreadable
        is the hour being read (checkpoint calls this before the STATE moves it on)."""
        upload, event = key
        return (hour_of(upload) or self._reading_hour, hour_of(event) if event else "")

    # --- delivery threads ------------------------------------------------------------------

    def refused(self, event: bytes, reason: str) -> None:
        """PostHog refused this encoded event for good (it went to the dead-letter file)."""
        try:
            parsed = orjson.loads(event)
        except orjson.JSONDecodeError:
            return
        if isinstance(parsed, dict) and isinstance(parsed.get("uuid"), str):
            with self._lock:
                self._refused.append((parsed["uuid"], hour_of(parsed.get("timestamp")), reason))

    def commit(self, position: int) -> None:
        """Write every segment up to `position` (its records are settled), durably, now."""
        with self._lock:
            ready = [entry for entry in self._pending if entry[0] <= position]
            if not ready and not self._refused:
                return
            self._pending = [entry for entry in self._pending if entry[0] > position]
            refused, self._refused = self._refused, []
        if self._database is None:
            return
        hours: dict[tuple[str, str], tuple[int, ...]] = {}
        dead: dict[tuple[str, str, str], int] = {}
        moved: dict[tuple[str, str, str], int] = {}
        reads: dict[str, tuple[str, str]] = {}
        for _, segment_hours, segment_dead, segment_moved, segment_reads in ready:
            hours.update(segment_hours)  # later segments hold the larger running totals
            dead.update(segment_dead)
            moved.update(segment_moved)
            reads.update(segment_reads)
        now = _now()
        database = self._database
        try:
            with database.transaction() as tx:
                for upload in sorted({upload for upload, _ in hours} - self._claimed):
                    # This run read the hour again from its start: earlier runs' counts go.
                    tx.execute("DELETE FROM ledger_hours WHERE upload_hour = ?", (upload,))
                    tx.execute("DELETE FROM ledger_dead_letters WHERE upload_hour = ?", (upload,))
                    tx.execute("DELETE FROM ledger_moved WHERE upload_hour = ?", (upload,))
                tx.executemany(_UPSERT_HOUR, [(*key, *n, now) for key, n in hours.items()])
                tx.executemany(_UPSERT_DEAD, [(*key, n) for key, n in dead.items()])
                tx.executemany(_UPSERT_MOVED, [(*key, n) for key, n in moved.items()])
                tx.executemany(_INSERT_REFUSED, [(*entry, now) for entry in refused])
                tx.executemany(
                    _UPSERT_READ,
                    [(stream, low, high, now) for stream, (low, high) in reads.items()],
                )
        except database.errors as exc:
            raise database.error(
                "could not be written (the migration's ledger)",
                exc,
                "Nothing after the last emitted STATE counts as delivered: the next run reads "
                "it again",
            ) from None
        self._claimed.update(upload for upload, _ in hours)
