"""The registry's `profiles` rows: read a page at a time, marked sent, and copied for a dry run.

A dry run works on an in-memory copy of the `profiles` table (profiles.py) and keeps nothing;
to show exactly the updates a real run would send, it copies in, read-only, the rows earlier
runs stored of the persons and groups it touches, and every row PostHog has not confirmed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from target_posthog.registry_store import Database, Transaction, open_database

PAGE = 2_000  # rows read at a time
_ROW = "SELECT kind, profile_key, state, version, sent_version FROM profiles "


class PendingProfile(NamedTuple):
    """A person or group update sent in a batch; recorded as sent once PostHog confirms it."""

    kind: str
    profile_key: str
    version: int


def record_sent(tx: Transaction, sent: list[PendingProfile]) -> None:
    """Mark updates PostHog confirmed (or settled without sending) as sent: `sent_version`
    moves up to the version each was built from (an update already recorded is left)."""
    tx.executemany(
        "UPDATE profiles SET sent_version = ? "
        "WHERE kind = ? AND profile_key = ? AND sent_version < ?",
        [(item.version, item.kind, item.profile_key, item.version) for item in sent],
    )


def unsent_pages(database: Database) -> Iterator[list[tuple[Any, ...]]]:
    """The rows PostHog has not confirmed (kind, profile_key, state, version, sent_version),
    in pages of `PAGE`, by (kind, profile_key)."""
    after = ("", "")
    while True:
        rows = database.read(
            _ROW + "WHERE version > sent_version AND (kind, profile_key) > (?, ?) "
            "ORDER BY kind, profile_key LIMIT ?",
            (*after, PAGE),
        )
        if not rows:
            return
        yield rows
        after = (rows[-1][0], rows[-1][1])


class StoredRows:
    """The registry's stored rows, read-only, copied into a dry run's working copy."""

    def __init__(self, source: Database) -> None:
        self._source = source

    @classmethod
    def open(cls, location: str) -> StoredRows | None:
        """None when the registry holds no profiles yet. Raises the database's errors."""
        source = open_database(location, read_only=True)
        if source.has_table("profiles"):
            return cls(source)
        source.close()
        return None

    def copy(self, tx: Transaction, kind: str, keys: list[str], marks: str) -> None:
        """The stored rows of `keys` (`marks`: one `?` each), copied into the working copy of
        `tx` once: a key already there is the copy, merged since."""
        present = {
            key
            for (key,) in tx.fetchall(
                f"SELECT profile_key FROM profiles WHERE kind = ? AND profile_key IN ({marks})",
                (kind, *keys),
            )
        }
        missing = [key for key in keys if key not in present]
        if missing:
            rows = self._source.read(
                _ROW + f"WHERE kind = ? AND profile_key IN ({','.join('?' * len(missing))})",
                (kind, *missing),
            )
            tx.executemany("INSERT INTO profiles VALUES (?, ?, ?, ?, ?)", rows)

    def copy_unsent(self) -> Iterator[Callable[[Transaction], None]]:
        """Every stored row PostHog has not confirmed (a real run sends those too): one
        change of the working copy per page, to apply in its own transaction."""
        for rows in unsent_pages(self._source):

            def copy(tx: Transaction, rows: list[tuple[Any, ...]] = rows) -> None:
                tx.executemany(
                    "INSERT INTO profiles VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", rows
                )

            yield copy

    def close(self) -> None:
        self._source.close()
