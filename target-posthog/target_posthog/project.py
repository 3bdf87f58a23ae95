"""Which PostHog project an alias registry serves, so that it never serves another.

The registry records the (device, user) pairs whose alias *one* PostHog project confirmed. Used
with another project (a rehearsal into a test project, then the real migration with the same
file), it would make the target skip every alias: the new project would get all the events and
none of the aliases, with anonymous history left unmerged for good. So the registry records the
project it serves, as its host and a fingerprint of the project API key (never the key: a
truncated HMAC-SHA256, enough to tell projects apart, useless to recover the key), and a run
for another project is refused with one line naming both and the fix.

A run checks the registry at start (`check_registry`) but records its project only once PostHog
has accepted a first request (`bind_registry`): a first run with a wrong key or host, refused by
PostHog, must not tie a new registry to that wrong project.

Kept in the registry's `registry_meta` table (key/value), beside the other tables, on SQLite or
PostgreSQL alike.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from target_posthog.client import Answer
from target_posthog.delivery import Sender
from target_posthog.registry_store import Database, RegistryError

# The table registry_meta (key/value) is migration 5 in registry_schema.py.
_CONFIRMED_ALIAS = "SELECT 1 FROM aliases WHERE confirmed_at IS NOT NULL LIMIT 1"
_HOST, _FINGERPRINT = "posthog_host", "posthog_project_key_fingerprint"
# Public and fixed: the fingerprint must be the same in every run and on every machine.
_FINGERPRINT_KEY = b"target-posthog registry project fingerprint"


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


def check_registry(database: Database, host: str, api_key: str) -> None:
    """Refuse a registry that serves another project (ProjectMismatchError, one line); a
    registry that serves none yet, or an older one without the table, passes."""
    with database.translating("cannot be used"):
        if database.has_table("registry_meta"):
            _refuse_another(
                database.location, _stored(database.read), canonical_host(host),
                key_fingerprint(api_key),
            )  # fmt: skip


def bind_registry(database: Database, host: str, api_key: str, *, read_only: bool) -> str | None:
    """Check that the registry serves this project; record it if it serves none yet.

    Returns a line to log when the registry was bound just now (None otherwise). Raises
    ProjectMismatchError naming both projects and the fix, or RegistryError if the registry
    cannot be used. `read_only` (a dry run) checks but never writes; an empty one is fine.
    """
    this_host, this_print = canonical_host(host), key_fingerprint(api_key)
    location = database.location
    with database.translating("cannot be used"):
        if read_only:  # a dry run does not migrate: an older registry may have no such table
            if database.has_table("registry_meta"):
                _refuse_another(location, _stored(database.read), this_host, this_print)
            return None
        with database.transaction(serialized="project") as tx:  # two runs bind it once
            stored = _stored(tx.fetchall)
            _refuse_another(location, stored, this_host, this_print)
            if stored is not None:
                return None
            had_aliases = bool(tx.fetchall(_CONFIRMED_ALIAS))
            tx.executemany(
                "INSERT INTO registry_meta (key, value) VALUES (?, ?)",
                [(_HOST, this_host), (_FINGERPRINT, this_print)],
            )
    if had_aliases:
        return (
            f"alias registry {location} recorded no PostHog project (made by an older "
            f"target-posthog); it now serves {describe(this_host, this_print)}. If its aliases "
            "were sent to another project, stop and use a new alias_registry file"
        )
    return f"alias registry {location} serves PostHog project {describe(this_host, this_print)}"


def _refuse_another(
    location: str, stored: tuple[str, str] | None, host: str, fingerprint: str
) -> None:
    if stored is not None and stored != (host, fingerprint):
        raise ProjectMismatchError(
            f"alias registry {location} serves PostHog project {describe(*stored)}, not "
            f"{describe(host, fingerprint)} of this run: its aliases were sent to that "
            "project only. For a new project use a new alias_registry file (and clear "
            "the job's state to start over); if the host or api_key is wrong, fix it"
        )


def _stored(read: Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]) -> tuple[str, str] | None:
    """The project recorded, read with `read` (a transaction's or the database's)."""
    values = dict(
        read("SELECT key, value FROM registry_meta WHERE key IN (?, ?)", (_HOST, _FINGERPRINT))
    )
    if _HOST not in values or _FINGERPRINT not in values:
        return None
    return values[_HOST], values[_FINGERPRINT]


def bind_on_first_acceptance(
    send: Sender, database: Database, host: str, api_key: str, log: Callable[[str], None]
) -> Sender:
    """`send`, recording the registry's PostHog project (`bind_registry`) once PostHog first
    accepts a request, before anything it accepted is recorded; `log` gets its line, if any.
    Thread-safe: delivery threads send at once."""
    bound = threading.Event()
    lock = threading.Lock()

    def sending(joined_events: memoryview) -> Answer:
        answer = send(joined_events)
        if not bound.is_set() and answer.accepted:
            with lock:
                if not bound.is_set():
                    line = bind_registry(database, host, api_key, read_only=False)
                    if line:
                        log(line)
                    bound.set()
        return answer

    return sending
