"""The registry in a PostgreSQL database (psycopg 3, loaded only when one is used)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from target_posthog.registry_database import Database, Transaction
from target_posthog.registry_location import with_lower_case_scheme

_PG_CONNECT_TIMEOUT_S = 10


def _advisory_key(name: str) -> int:
    """A PostgreSQL advisory lock key (bigint) for a named kind of transaction."""
    digest = hashlib.blake2b(f"target-posthog:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


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
