"""Where the registry lives: a SQLite file or a PostgreSQL database, behind one small interface.

`open_database(location)` takes the `alias_registry` setting: a `postgresql://` (or
`postgres://`) URL opens PostgreSQL through psycopg 3 (registry_postgres); anything else is a
SQLite file path (registry_sqlite). Both give a `Database` (registry_database): `transaction()`,
`read()`, `migrate()`, and what concurrent runs need to tell a live claim holder from a dead
one. The location's secrets are handled in registry_location; `location` is always the
redacted form, and errors are raised as `RegistryError` without the password.

This module is the registry's storage interface for the rest of the target: the names below
are imported from here.
"""

from __future__ import annotations

import sqlite3

from target_posthog.registry_database import Database, RegistryError, Transaction, utc_now
from target_posthog.registry_location import (
    hide_secrets,
    is_postgres_url,
    likely_cause,
    redact,
    unsupported_location,
)
from target_posthog.registry_postgres import PostgresDatabase
from target_posthog.registry_sqlite import MEMORY, SQLiteDatabase

__all__ = [
    "MEMORY",
    "Database",
    "RegistryError",
    "Transaction",
    "hide_secrets",
    "open_database",
    "redact",
    "utc_now",
]


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
            + likely_cause(str(exc), SQLiteDatabase.default_cause)
        ) from exc
