"""The alias registry: which device PostHog has tied to which user, durable across runs.

One SQLite file in WAL mode, written in transactions and only after PostHog confirmed the
batch carrying the aliases, so a crash can repeat an alias (same uuid, PostHog dedupes it)
but never lose one. Pairs sent but not yet confirmed are tracked in memory, so one run never
sends a pair twice. Owned by the target (one per process), safe to use from delivery threads.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import NamedTuple

_SCHEMA = """
CREATE TABLE IF NOT EXISTS aliases (
    device_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    first_seen_at TEXT NOT NULL,
    confirmed_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS shared_devices (
    device_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    first_seen_at TEXT NOT NULL,
    PRIMARY KEY (device_id, user_id)
) WITHOUT ROWID;
"""
_BUSY_TIMEOUT_MS = 30_000  # another process holding the write lock: wait this long, then fail
_CACHE_LIMIT = 200_000  # confirmed owners kept in memory; beyond that SQLite answers


class RegistryError(Exception):
    """The registry file cannot be used (locked, unreadable, not a registry)."""


def likely_cause(error: sqlite3.Error) -> str:
    """What the user should look at, from SQLite's message."""
    message = str(error)
    if "locked" in message:
        return "another process holds it"
    if "not a database" in message or "malformed" in message:
        return "it is not an alias registry, or it is damaged"
    return "check the disk it is on (free space, quota, permissions)"


class Claim(Enum):
    """What to do with a (device, user) pair seen in a record."""

    NEW = "new"  # first time: send an alias (now in flight)
    KNOWN = "known"  # already tied to this user (confirmed or in flight)
    SHARED_DEVICE = "shared_device"  # tied to another user: PostHog would refuse; report it


class PendingAlias(NamedTuple):
    """An alias sent in a batch, recorded once PostHog confirms that batch."""

    device_id: str
    user_id: str
    first_seen_at: str


class AliasRegistry:
    """device_id -> user_id, persisted in SQLite; read-only (dry run) never writes."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self._memory_lock = threading.Lock()  # the dicts below
        self._db_lock = threading.Lock()  # the connections (used by delivery threads too)
        self._in_flight: dict[str, str] = {}
        self._confirmed: dict[str, str] = {}  # device -> user, a bounded cache of the table
        self._confirmed_is_complete = False  # True: a miss means "not in the table" either
        self._shared_seen: set[tuple[str, str]] = set()
        self.shared_device_pairs = 0
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        try:
            self._open()
            self._load_cache()
        except sqlite3.Error as exc:
            self.close()
            raise RegistryError(
                f"alias registry {path} cannot be used ({exc}); {likely_cause(exc)}"
            ) from exc

    def _open(self) -> None:
        if self.read_only:
            if self.path.exists():  # a dry run reads what earlier runs recorded, creates nothing
                self._reader = sqlite3.connect(
                    f"{self.path.as_uri()}?mode=ro", uri=True, check_same_thread=False
                )
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Created user-only before SQLite touches it; SQLite gives -wal/-shm the same mode.
        # (No exclusive lock: two runs sharing a registry could both send an alias, but with
        # the same deterministic uuid, which PostHog dedupes.)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.fchmod(descriptor, 0o600)
        os.close(descriptor)
        self._writer = self._connect()
        self._writer.execute("PRAGMA journal_mode=WAL")
        self._writer.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives process kills
        with self._transaction() as writer:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    writer.execute(statement)
        self._reader = self._connect()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path,
            timeout=_BUSY_TIMEOUT_MS / 1000,
            check_same_thread=False,
            isolation_level=None,
        )
        connection.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        return connection

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One explicit transaction: all of it is stored, or none (the connection is in
        autocommit mode, where `with connection:` would not open one)."""
        assert self._writer is not None
        with self._db_lock:
            self._writer.execute("BEGIN IMMEDIATE")  # takes the write lock now (busy_timeout)
            try:
                yield self._writer
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
            self._writer.execute("COMMIT")

    def _load_cache(self) -> None:
        """Small registries live wholly in memory: no SQLite lookup per new device."""
        if self._reader is None:
            self._confirmed_is_complete = True
            return
        if self.count() <= _CACHE_LIMIT:
            rows = self._reader.execute("SELECT device_id, user_id FROM aliases")
            self._confirmed = dict(rows.fetchall())
            self._confirmed_is_complete = True

    def claim(self, device_id: str, user_id: str, seen_at: str) -> Claim:
        """Decide for one pair; a NEW pair is in flight until `record_confirmed`."""
        with self._memory_lock:
            owner = self._in_flight.get(device_id) or self._confirmed.get(device_id)
            complete = self._confirmed_is_complete
        if owner is None and not complete:
            owner = self._stored_owner(device_id)
        if owner is None:
            with self._memory_lock:
                owner = self._in_flight.setdefault(device_id, user_id)
            if owner == user_id:
                return Claim.NEW
        if owner == user_id:
            return Claim.KNOWN
        self._note_shared_device(device_id, user_id, seen_at)
        return Claim.SHARED_DEVICE

    def owner_of(self, device_id: str) -> str | None:
        """The user PostHog confirmed this device is aliased to, if any."""
        with self._memory_lock:
            owner = self._confirmed.get(device_id)
            complete = self._confirmed_is_complete
        if owner is None and not complete:
            owner = self._stored_owner(device_id)
        return owner

    def _stored_owner(self, device_id: str) -> str | None:
        if self._reader is None:
            return None
        with self._db_lock:
            row = self._reader.execute(
                "SELECT user_id FROM aliases WHERE device_id = ?", (device_id,)
            ).fetchone()
        if row is None:
            return None
        with self._memory_lock:
            self._remember(device_id, row[0])
        return str(row[0])

    def _remember(self, device_id: str, user_id: str) -> None:
        """Caller holds the memory lock."""
        if len(self._confirmed) >= _CACHE_LIMIT:
            self._confirmed.clear()  # flat memory; SQLite still knows them all
            self._confirmed_is_complete = False
        self._confirmed[device_id] = user_id

    def _note_shared_device(self, device_id: str, user_id: str, seen_at: str) -> None:
        with self._memory_lock:
            if (device_id, user_id) in self._shared_seen:
                return
            if len(self._shared_seen) < _CACHE_LIMIT:
                self._shared_seen.add((device_id, user_id))
            self.shared_device_pairs += 1
        if self._writer is not None:
            with self._transaction() as writer:
                writer.execute(
                    "INSERT OR IGNORE INTO shared_devices VALUES (?, ?, ?)",
                    (device_id, user_id, seen_at),
                )

    def record_confirmed(self, aliases: list[PendingAlias]) -> None:
        """PostHog confirmed these aliases: store them in one transaction, then forget in-flight."""
        if not aliases:
            return
        if self._writer is not None:
            now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            try:
                with self._transaction() as writer:
                    writer.executemany(
                        "INSERT OR IGNORE INTO aliases VALUES (?, ?, ?, ?)",
                        [(a.device_id, a.user_id, a.first_seen_at, now) for a in aliases],
                    )
            except sqlite3.Error as exc:
                raise RegistryError(
                    f"alias registry {self.path} could not be written ({exc}); "
                    f"{likely_cause(exc)}. The batch counts as not delivered: the next run "
                    "resends it with the same uuids"
                ) from exc
        with self._memory_lock:
            for alias in aliases:
                self._remember(alias.device_id, alias.user_id)
                self._in_flight.pop(alias.device_id, None)

    def count(self) -> int:
        """Aliases stored (for the summary)."""
        if self._reader is None:
            return 0
        with self._db_lock:
            return int(self._reader.execute("SELECT count(*) FROM aliases").fetchone()[0])

    def close(self) -> None:
        for connection in (self._reader, self._writer):
            if connection is not None:
                connection.close()
        self._reader = self._writer = None
