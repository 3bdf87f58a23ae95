"""Which PostHog project an alias registry serves, so that it never serves another.

The registry records the (device, user) pairs whose alias *one* PostHog project confirmed. Used
with another project (a rehearsal into a test project, then the real migration with the same
file), it would make the target skip every alias: the new project would get all the events and
none of the aliases, with anonymous history left unmerged for good. So the registry records the
project it serves, as its host and a fingerprint of the project API key (never the key: a
truncated HMAC-SHA256, enough to tell projects apart, useless to recover the key), and a run
for another project is refused with one line naming both and the fix.

Kept in the registry file's `registry_meta` table (key/value), beside the other tables.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

from target_posthog.registry import RegistryError, likely_cause

_DDL = "CREATE TABLE IF NOT EXISTS registry_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
_HOST, _FINGERPRINT = "posthog_host", "posthog_project_key_fingerprint"
# Public and fixed: the fingerprint must be the same in every run and on every machine.
_FINGERPRINT_KEY = b"target-posthog registry project fingerprint"
_BUSY_TIMEOUT_S = 30.0


class ProjectMismatchError(RegistryError):
    """The registry serves another PostHog project."""


def key_fingerprint(api_key: str) -> str:
    """12 hex digits (48 bits) of HMAC-SHA256 over the project API key."""
    return hmac.new(_FINGERPRINT_KEY, api_key.encode(), hashlib.sha256).hexdigest()[:12]


def canonical_host(host: str) -> str:
    """scheme://host[:port], lower-cased, without path or trailing slash."""
    parts = urlsplit(host.strip())
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}{port}"


def describe(host: str, fingerprint: str) -> str:
    return f"{host} (project key fingerprint {fingerprint})"


def bind_registry(path: Path, host: str, api_key: str, *, read_only: bool) -> str | None:
    """Check that the registry at `path` serves this project; record it if it serves none yet.

    Returns a line to log when the registry was bound just now (None otherwise). Raises
    ProjectMismatchError naming both projects and the fix, or RegistryError if the file
    cannot be used. `read_only` (a dry run) checks but never writes; a missing file is fine.
    """
    this_host, this_print = canonical_host(host), key_fingerprint(api_key)
    if read_only and not path.exists():
        return None
    try:
        connection = _connect(path, read_only=read_only)
    except sqlite3.Error as exc:
        raise RegistryError(
            f"alias registry {path} cannot be used ({exc}); {likely_cause(exc)}"
        ) from exc
    try:
        return _check_or_record(connection, path, this_host, this_print, read_only=read_only)
    except sqlite3.Error as exc:
        raise RegistryError(
            f"alias registry {path} cannot be used ({exc}); {likely_cause(exc)}"
        ) from exc
    finally:
        connection.close()


def _connect(path: Path, *, read_only: bool) -> sqlite3.Connection:
    if read_only:
        return sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # user-only, as the registry
    os.close(descriptor)
    return sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)


def _check_or_record(
    connection: sqlite3.Connection, path: Path, host: str, fingerprint: str, *, read_only: bool
) -> str | None:
    if not read_only:
        connection.execute("BEGIN IMMEDIATE")  # two runs starting at once bind it once
    try:
        stored = _stored(connection)
        if stored is not None:
            if stored != (host, fingerprint):
                raise ProjectMismatchError(
                    f"alias registry {path} serves PostHog project {describe(*stored)}, not "
                    f"{describe(host, fingerprint)} of this run: its aliases were sent to that "
                    "project only. For a new project use a new alias_registry file (and clear "
                    "the job's state to start over); if the host or api_key is wrong, fix it"
                )
            return None
        if read_only:
            return None
        connection.execute(_DDL)
        had_aliases = _has_rows(connection, "aliases")
        connection.executemany(
            "INSERT INTO registry_meta (key, value) VALUES (?, ?)",
            [(_HOST, host), (_FINGERPRINT, fingerprint)],
        )
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    if had_aliases:
        return (
            f"alias registry {path} recorded no PostHog project (made by an older "
            f"target-posthog); it now serves {describe(host, fingerprint)}. If its aliases "
            "were sent to another project, stop and use a new alias_registry file"
        )
    return f"alias registry {path} serves PostHog project {describe(host, fingerprint)}"


def _stored(connection: sqlite3.Connection) -> tuple[str, str] | None:
    if not _has_table(connection, "registry_meta"):
        return None
    values = dict(
        connection.execute(
            "SELECT key, value FROM registry_meta WHERE key IN (?, ?)", (_HOST, _FINGERPRINT)
        ).fetchall()
    )
    if _HOST not in values or _FINGERPRINT not in values:
        return None
    return values[_HOST], values[_FINGERPRINT]


def _has_table(connection: sqlite3.Connection, name: str) -> bool:
    row = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


def _has_rows(connection: sqlite3.Connection, table: str) -> bool:
    if not _has_table(connection, table):
        return False
    return connection.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None
