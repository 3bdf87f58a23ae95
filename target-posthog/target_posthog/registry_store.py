"""Where the registry lives: a SQLite file or a PostgreSQL database, behind one small interface.

`open_database(location)` takes the `alias_registry` setting: a `postgresql://` (or
`postgres://`) URL opens PostgreSQL through psycopg 3; anything else is a SQLite file path.
Both give a `Database`: `transaction()` (one atomic write transaction, serialized against
other processes), `read()`, `migrate()` (registry_schema's migrations), and what concurrent
runs need to tell a live claim holder from a dead one.

SQL is written once, with `?` placeholders (translated to psycopg's `%s`). The URL's password
(or any other secret in it) never leaves this module: `location` is the redacted form, and
every error message is scrubbed of it before it is raised as `RegistryError`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import re
import socket
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from target_posthog.registry_schema import LATEST, MIGRATIONS

_SQLITE_BUSY_TIMEOUT_S = 30.0  # another process holding the write lock: wait this long, then fail
_PG_CONNECT_TIMEOUT_S = 10
_URL_SCHEMES = ("postgresql://", "postgres://")
MEMORY = ":memory:"  # open_database(MEMORY): an in-memory SQLite database


class RegistryError(Exception):
    """The registry cannot be used (locked, unreachable, unreadable, not a registry)."""


def utc_now() -> str:
    """Registry times: ISO 8601 UTC text, the same on both backends."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _advisory_key(name: str) -> int:
    """A PostgreSQL advisory lock key (bigint) for a named kind of transaction."""
    digest = hashlib.blake2b(f"target-posthog:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


# Any URL scheme (SQLAlchemy's `postgresql+psycopg://` included), and libpq's key=value form:
# neither is a file path, and taking one for a path would put its password in a file name.
_ANY_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_KEY_VALUE = re.compile(r"(?:^|\s)(?:host|hostaddr|port|dbname|user|password)\s*=", re.IGNORECASE)
_KEY_VALUE_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
# A driver message quoting back a URL it could not parse: shown without the quote.
_UNPARSED_URL = ("invalid uri", "uri query", "connection info string", "invalid dsn")


def is_postgres_url(location: str) -> bool:
    return location.lower().startswith(_URL_SCHEMES)


def unsupported_location(location: str) -> bool:
    """True for a URL other than postgresql:// or a libpq key=value string (not a file path)."""
    if is_postgres_url(location):
        return False
    return bool(_ANY_URL.match(location) or _KEY_VALUE.search(location))


def redact(location: str) -> str:
    """The location as it may be shown: a URL's password and secret query values as ***."""
    if not _ANY_URL.match(location):
        return _KEY_VALUE_PASSWORD.sub(r"\1***", location)
    # The credentials end at the last "@": a password typed without percent-encoding may hold
    # "/", "?" or "#", which would end the URL's netloc early for urlsplit.
    scheme, _, rest = location.partition("://")
    credentials, at, rest = rest.rpartition("@")
    login = ""
    if at:
        user = credentials.split(":", 1)[0]
        login = f"{user}:***@" if ":" in credentials else f"{user}@"
    parts = urllib.parse.urlsplit(f"{scheme}://{rest}")
    netloc = login + parts.netloc
    query = urllib.parse.urlencode(
        [
            (key, "***" if key.lower() in {"password", "sslpassword", "passfile"} else value)
            for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*",
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def with_lower_case_scheme(location: str) -> str:
    """A URL's scheme is case-insensitive (RFC 3986, 3.1) but libpq takes only lower case:
    ``POSTGRESQL://...`` is what the user meant by ``postgresql://...``."""
    scheme, sep, rest = location.partition("://")
    return f"{scheme.lower()}{sep}{rest}" if sep and _ANY_URL.match(location) else location


def hide_secrets(text: str, secrets: Sequence[str]) -> str:
    """`text` with each secret shown as ***, where it stands as a token of its own.

    A short password ("a", "pg") also occurs inside ordinary words of a driver's message
    ("password authentication failed"): replacing it there would mangle the message and reveal
    the password by the pattern of the damage. A secret is hidden wherever it is not part of a
    longer run of letters and digits, which is how a driver quotes a value back.
    """
    for secret in sorted(secrets, key=len, reverse=True):
        pattern = rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])"
        text = re.sub(pattern, "***", text)
    return text


def _secrets_of(location: str) -> list[str]:
    """The strings that must never appear in a message: the password, raw and URL-decoded."""
    if not is_postgres_url(location):
        return []
    parts = urllib.parse.urlsplit(location)
    found = [parts.password or ""]
    found += [v for k, v in urllib.parse.parse_qsl(parts.query) if k.lower() == "password"]
    return [s for secret in found if secret for s in {secret, urllib.parse.unquote(secret)}]


def _likely_cause(message: str, default: str) -> str:
    """What the user should look at, from SQLite's or PostgreSQL's message."""
    lowered = message.lower()
    causes = (
        ("password authentication", "check the user name and password"),
        ("locked", "another process holds it"),
        ("not a database", "it is not an alias registry, or it is damaged"),
        ("malformed", "it is not an alias registry, or it is damaged"),
        ("does not exist", "create the database (or role) first"),
        ("permission denied", "the user needs rights to create and write tables there"),
        ("read-only", "the database is read-only"),
        ("connect", "check that the PostgreSQL server is running and reachable from here"),
        ("timeout", "check that the PostgreSQL server is running and reachable from here"),
    )
    for needle, cause in causes:
        if needle in lowered:
            return cause
    return default


class Database:
    """One registry database, used by one target process from several threads."""

    dialect = ""
    without_rowid = ""
    default_cause = ""

    def __init__(self, location: str, *, read_only: bool) -> None:
        self.location = redact(location)
        self.read_only = read_only
        self._secrets = _secrets_of(location)
        self._lock = threading.Lock()  # the connection, shared by delivery threads

    # --- errors --------------------------------------------------------------------------

    def error(self, doing: str, exc: BaseException, consequence: str = "") -> RegistryError:
        """A one-line RegistryError naming the registry, what failed and the likely cause."""
        detail = " ".join(str(exc).split()) or type(exc).__name__
        if any(marker in detail.lower() for marker in _UNPARSED_URL):
            # The driver quotes the part of the URL it choked on: it may hold the password.
            detail = "the URL cannot be parsed"
            cause = (
                "write it as postgresql://user:password@host:port/database, with the characters "
                "@ : / % # ? of the user name and password percent-encoded (@ as %40 ...)"
            )
        else:
            detail = hide_secrets(detail, self._secrets)
            cause = _likely_cause(detail, self.default_cause)
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


class PostgresDatabase(Database):
    """A PostgreSQL database (psycopg 3); a run is alive while its session holds an advisory
    lock, which PostgreSQL releases the moment the process or its connection dies."""

    dialect = "postgresql"
    default_cause = "check the PostgreSQL server (its disk, the user's rights)"

    def __init__(self, location: str, *, read_only: bool) -> None:
        super().__init__(location, read_only=read_only)
        import psycopg  # only PostgreSQL registries need it loaded

        self._psycopg = psycopg
        try:
            self._connection = psycopg.connect(
                with_lower_case_scheme(location),
                autocommit=True,
                connect_timeout=_PG_CONNECT_TIMEOUT_S,
            )
            if read_only:  # belt and braces: a dry run cannot write even by mistake
                self._connection.execute("SET default_transaction_read_only = on")
        except psycopg.Error as exc:
            raise self.error("cannot be opened", exc) from None

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        return (self._psycopg.Error,)

    @contextmanager
    def transaction(self, *, serialized: str = "") -> Iterator[Transaction]:
        with self._lock, self._connection.transaction(), self._connection.cursor() as cursor:
            tx = Transaction(cursor, "%s")
            if serialized:  # held until this transaction ends
                tx.execute("SELECT pg_advisory_xact_lock(?)", (_advisory_key(serialized),))
            yield tx

    def read(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._connection.execute(sql.replace("?", "%s"), parameters).fetchall()

    def has_table(self, name: str) -> bool:
        return self.read("SELECT to_regclass(?)", (name,))[0][0] is not None

    def _has_table(self, tx: Transaction, name: str) -> bool:
        return tx.fetchone("SELECT to_regclass(?)", (name,))[0] is not None

    def hold_run(self, run_key: int) -> None:
        super().hold_run(run_key)
        self.read("SELECT pg_advisory_lock(?)", (run_key,))  # held by this session until close

    def run_is_alive(self, tx: Transaction, run_key: int) -> bool:
        if not tx.fetchone("SELECT pg_try_advisory_lock(?)", (run_key,))[0]:
            return True  # its session still holds it
        tx.execute("SELECT pg_advisory_unlock(?)", (run_key,))
        return False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.close()


def open_database(location: str, *, read_only: bool = False) -> Database:
    """The registry at `location` (a PostgreSQL URL or a SQLite path); RegistryError if it
    cannot be opened."""
    if is_postgres_url(location):
        return PostgresDatabase(location, read_only=read_only)
    if unsupported_location(location):
        raise RegistryError(
            f"alias registry {redact(location)} is neither a SQLite file path nor a "
            "postgresql:// URL; write PostgreSQL as postgresql://user:password@host:port/database "
            "(no '+driver' part as in SQLAlchemy URLs, no key=value form)"
        )
    try:
        return SQLiteDatabase(location, read_only=read_only)
    except sqlite3.Error as exc:
        raise RegistryError(
            f"alias registry {location} cannot be used ({exc}); "
            + _likely_cause(str(exc), SQLiteDatabase.default_cause)
        ) from exc
