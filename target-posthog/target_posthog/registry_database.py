"""One registry database behind a small interface: transactions, reads, schema, live runs.

`Database` is what the registry's modules use, the same on both backends (registry_sqlite,
registry_postgres): `transaction()` (one atomic write transaction, serialized against other
processes), `read()`, `migrate()` (registry_schema's migrations), and what concurrent runs need
to tell a live claim holder from a dead one. SQL is written once, with `?` placeholders
(translated to psycopg's `%s` by `Transaction`).

The URL's password (or any other secret in it) never leaves the backends: `location` is the
redacted form, and every error message is scrubbed of it before it is raised as
`RegistryError`.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psutil

from target_posthog.registry_location import (
    UNPARSED_URL,
    hide_secrets,
    likely_cause,
    redact,
    secrets_of,
)
from target_posthog.registry_schema import LATEST, MIGRATIONS


class RegistryError(Exception):
    """The registry cannot be used (locked, unreachable, unreadable, not a registry)."""


def utc_now() -> str:
    """Registry times: ISO 8601 UTC text, the same on both backends."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Database:
    """One registry database, used by one target process from several threads."""

    dialect = ""
    without_rowid = ""
    default_cause = ""

    def __init__(self, location: str, *, read_only: bool) -> None:
        self.location = redact(location)
        self.read_only = read_only
        self._secrets = secrets_of(location)
        self._lock = threading.Lock()  # the connection, shared by delivery threads

    # --- errors --------------------------------------------------------------------------

    def error(self, doing: str, exc: BaseException, consequence: str = "") -> RegistryError:
        """A one-line RegistryError naming the registry, what failed and the likely cause."""
        detail = " ".join(str(exc).split()) or type(exc).__name__
        if any(marker in detail.lower() for marker in UNPARSED_URL):
            # The driver quotes the part of the URL it choked on: it may hold the password.
            detail = "the URL cannot be parsed"
            cause = (
                "write it as postgresql://user:password@host:port/database, with the characters "
                "@ : / % # ? of the user name and password percent-encoded (@ as %40 ...)"
            )
        else:
            detail = hide_secrets(detail, self._secrets)
            cause = likely_cause(detail, self.default_cause)
        message = f"alias registry {self.location} {doing} ({detail}); {cause}"
        return RegistryError(message + (f". {consequence}" if consequence else ""))

    @contextmanager
    def translating(self, doing: str, consequence: str = "") -> Iterator[None]:
        """The backend's own errors inside become `error(doing, ...)` (password-free)."""
        try:
            yield
        except self.errors as exc:
            raise self.error(doing, exc, consequence) from None

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        raise NotImplementedError

    # --- reading and writing -------------------------------------------------------------

    @contextmanager
    def transaction(self, *, serialized: str = "") -> Iterator[Transaction]:
        """All of it is stored, or none; other processes' writers wait (SQLite) or see rows
        only once it commits (PostgreSQL). `serialized` names a kind of transaction that runs
        one at a time across processes on PostgreSQL too (read-modify-write of shared rows;
        SQLite runs every write transaction one at a time anyway)."""
        raise NotImplementedError
        yield  # pragma: no cover

    def read(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def has_table(self, name: str) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # --- schema --------------------------------------------------------------------------

    def migrate(self) -> int:
        """Apply the missing migrations in one transaction; returns the version now in force."""
        with self.transaction(serialized="schema") as tx:
            if not self._has_table(tx, "schema_migrations"):
                tx.execute(
                    "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, "
                    "description TEXT NOT NULL, applied_at TEXT NOT NULL)"
                )
                if self._has_table(tx, "aliases"):  # made before versions were numbered
                    self._record(tx, MIGRATIONS[0].version, "found (unnumbered registry)")
            version = int(tx.fetchone("SELECT max(version) FROM schema_migrations")[0] or 0)
            self._refuse_newer(version)
            for migration in MIGRATIONS[version:]:
                for statement in migration.statements:
                    tx.execute(statement.format(without_rowid=self.without_rowid))
                self._record(tx, migration.version, migration.description)
        return LATEST

    def version(self) -> int:
        """The schema version (0: no registry yet); refuses one made by a newer target."""
        if self.has_table("schema_migrations"):
            version = int(self.read("SELECT max(version) FROM schema_migrations")[0][0] or 0)
        else:
            version = 1 if self.has_table("aliases") else 0
        self._refuse_newer(version)
        return version

    def _refuse_newer(self, version: int) -> None:
        if version > LATEST:
            raise RegistryError(
                f"alias registry {self.location} has schema version {version}, made by a newer "
                f"target-posthog (this one knows up to {LATEST}); upgrade target-posthog"
            )

    @staticmethod
    def _record(tx: Transaction, version: int, description: str) -> None:
        tx.execute(
            "INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, description, utc_now())
        )

    def _has_table(self, tx: Transaction, name: str) -> bool:
        raise NotImplementedError

    # --- concurrent runs -----------------------------------------------------------------

    def hold_run(self, run_key: int) -> None:
        """Make this process's run findable as alive by other processes until close()."""
        host, pid = socket.gethostname(), os.getpid()
        started = psutil.Process(pid).create_time()
        with self.transaction() as tx:
            tx.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?)", (run_key, host, pid, started, utc_now())
            )

    def run_is_alive(self, tx: Transaction, run_key: int) -> bool:
        """Is the run that holds `run_key` still running (so its claims stand)?"""
        raise NotImplementedError

    def end_run(self, run_key: int) -> None:
        with self.transaction() as tx:
            tx.execute("DELETE FROM runs WHERE run_key = ?", (run_key,))


class Transaction:
    """The statements of one transaction (placeholders `?` on every backend)."""

    def __init__(self, cursor: Any, placeholder: str) -> None:
        self._cursor = cursor
        self._placeholder = placeholder

    def _sql(self, sql: str) -> str:
        return sql if self._placeholder == "?" else sql.replace("?", self._placeholder)

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> int:
        """Returns the number of rows changed."""
        self._cursor.execute(self._sql(sql), parameters)
        return int(self._cursor.rowcount)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._cursor.executemany(self._sql(sql), rows)

    def fetchall(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._cursor.execute(self._sql(sql), parameters)
        return [tuple(row) for row in self._cursor.fetchall()]

    def fetchone(self, sql: str, parameters: Sequence[Any] = ()) -> tuple[Any, ...]:
        self._cursor.execute(self._sql(sql), parameters)
        row = self._cursor.fetchone()
        return tuple(row) if row is not None else ()
