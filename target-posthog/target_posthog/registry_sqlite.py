"""The registry in a SQLite file: WAL mode, user-only (0600), one connection per process."""

from __future__ import annotations

import os
import socket
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from target_posthog.registry_database import Database, Transaction

_SQLITE_BUSY_TIMEOUT_S = 30.0  # another process holding the write lock: wait this long, then fail
MEMORY = ":memory:"  # open_database(MEMORY): an in-memory SQLite database


class SQLiteDatabase(Database):
    """A SQLite file in WAL mode, user-only (0600), one connection per process."""

    dialect = "sqlite"
    without_rowid = " WITHOUT ROWID"
    default_cause = "check the disk it is on (free space, quota, permissions)"

    def __init__(self, location: str, *, read_only: bool) -> None:
        super().__init__(location, read_only=read_only)
        self.path = Path(location)
        self._connection: sqlite3.Connection | None = None
        if location == MEMORY:  # scratch space that keeps nothing (a dry run's working copy)
            self._connection = self._connect(MEMORY)
            return
        if read_only:
            if self.path.exists():  # a dry run reads what earlier runs recorded, creates nothing
                self._connection = self._connect(f"{self.path.resolve().as_uri()}?mode=ro")
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Created user-only before SQLite touches it; SQLite gives -wal/-shm the same mode.
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.fchmod(descriptor, 0o600)
        os.close(descriptor)
        self._connection = self._connect(str(self.path))
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives kills

    @staticmethod
    def _connect(target: str) -> sqlite3.Connection:
        connection = sqlite3.connect(
            target,
            uri=target.startswith("file:"),
            timeout=_SQLITE_BUSY_TIMEOUT_S,
            check_same_thread=False,
            isolation_level=None,  # autocommit: transactions are explicit, below
        )
        connection.execute(f"PRAGMA busy_timeout={int(_SQLITE_BUSY_TIMEOUT_S * 1000)}")
        return connection

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.Error,)

    @contextmanager
    def transaction(self, *, serialized: str = "") -> Iterator[Transaction]:
        assert self._connection is not None, "read-only registry"
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")  # the write lock now (busy_timeout)
            try:
                yield Transaction(self._connection.cursor(), "?")
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    def read(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self._connection is None:
            return []
        with self._lock:
            return self._connection.execute(sql, parameters).fetchall()

    def has_table(self, name: str) -> bool:
        query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return bool(self.read(query, (name,)))

    def _has_table(self, tx: Transaction, name: str) -> bool:
        query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return bool(tx.fetchone(query, (name,)))

    def run_is_alive(self, tx: Transaction, run_key: int) -> bool:
        """A SQLite file is used from one machine: the holder's process still exists (the
        same pid, started at the same time, so not a reused pid)."""
        row = tx.fetchone(
            "SELECT host, pid, process_started FROM runs WHERE run_key = ?", (run_key,)
        )
        if not row:
            return False
        host, pid, started = row
        if host != socket.gethostname():
            return True  # cannot tell from here: leave its claims alone
        try:
            return abs(psutil.Process(int(pid)).create_time() - float(started)) < 0.01
        except psutil.Error:
            return False

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
