"""The registry's schema: one numbered list of migrations, the same on SQLite and PostgreSQL.

The registry's tables are whatever `MIGRATIONS` creates, applied in order. A registry records
each version it applied in `schema_migrations`; opening it applies the missing ones in one
transaction, under a lock, so two runs starting at once migrate it once. A registry made by an
older target-posthog (even one from before versions were numbered: it has `aliases` but no
`schema_migrations`, and counts as version 1) is brought up to date in place; one made by a
newer target-posthog is refused with a clear line instead of being misread.

Adding a table (or a column) is one change, here: append a `Migration` with the next number.
Never edit a migration that has shipped; write a new one instead.

    Migration(6, "verify: the per-hour ledger", (
        "CREATE TABLE verify_hours (hour TEXT PRIMARY KEY, ...){without_rowid}",
    )),

Statements are plain SQL that both SQLite and PostgreSQL accept: TEXT for strings and ISO-8601
times, BIGINT for integers, DOUBLE PRECISION for floats, `ON CONFLICT` for upserts; no
AUTOINCREMENT/SERIAL. `{without_rowid}` becomes SQLite's `WITHOUT ROWID` (compact tables with a
TEXT primary key) and nothing on PostgreSQL. Code using the new table reads and writes it
through `AliasRegistry.database` (`registry_store.Database`: `transaction()`, `read()`), with
`?` placeholders on both backends.
"""

from __future__ import annotations

from typing import NamedTuple

from target_posthog.ledger import (
    LEDGER_MOVED_TABLES,
    LEDGER_NO_EVENT_TIME,
    LEDGER_READS_TABLES,
    LEDGER_TABLES,
)


class Migration(NamedTuple):
    """One step from version `version - 1` to `version`."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "aliases PostHog confirmed; devices seen with a second user",
        (
            """CREATE TABLE IF NOT EXISTS aliases (
                device_id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL,
                first_seen_at TEXT NOT NULL,
                confirmed_at TEXT NOT NULL
            ){without_rowid}""",
            """CREATE TABLE IF NOT EXISTS shared_devices (
                device_id TEXT NOT NULL,
                user_id TEXT NOT NULL,
                first_seen_at TEXT NOT NULL,
                PRIMARY KEY (device_id, user_id)
            ){without_rowid}""",
        ),
    ),
    Migration(
        2,
        "claims shared by concurrent runs: an alias row exists from its claim on, "
        "confirmed_at is set once PostHog confirmed it; runs record who holds claims",
        (
            """CREATE TABLE aliases_v2 (
                device_id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL,
                first_seen_at TEXT NOT NULL,
                confirmed_at TEXT,
                claimed_by BIGINT
            ){without_rowid}""",
            """INSERT INTO aliases_v2 (device_id, user_id, first_seen_at, confirmed_at)
                SELECT device_id, user_id, first_seen_at, confirmed_at FROM aliases""",
            "DROP TABLE aliases",
            "ALTER TABLE aliases_v2 RENAME TO aliases",
            """CREATE TABLE runs (
                run_key BIGINT PRIMARY KEY,
                host TEXT NOT NULL,
                pid BIGINT NOT NULL,
                process_started DOUBLE PRECISION NOT NULL,
                started_at TEXT NOT NULL
            )""",
        ),
    ),
    Migration(
        3,
        "person and group properties, newest by event time (profiles.py)",
        (
            # kind: 'person' (profile_key = distinct_id) or 'group' (JSON [group type, key]).
            # state: JSON {"set": [values, orders, first, last], "once": [...], "snapshot":
            # [order, values, names of older snapshots] (added later; read as absent), "by":
            # [order, distinct_id]} (see winners.Winners, profile_state.Snapshot); order =
            # event timestamp (RFC 3339, fixed
            # width) + event uuid. version: bumped when a value changes; sent_version: the
            # version PostHog confirmed.
            """CREATE TABLE IF NOT EXISTS profiles (
                kind TEXT NOT NULL,
                profile_key TEXT NOT NULL,
                state TEXT NOT NULL,
                version INTEGER NOT NULL,
                sent_version INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (kind, profile_key)
            )""",
            "CREATE INDEX IF NOT EXISTS profiles_unsent ON profiles (kind) "
            "WHERE version > sent_version",
        ),
    ),
    Migration(
        4,
        "PostHog's agreed speed shared by concurrent runs (rate_budget.py): the end of the "
        "last reserved time slot, in epoch seconds",
        (
            """CREATE TABLE rate_slots (
                name TEXT PRIMARY KEY,
                next_slot DOUBLE PRECISION NOT NULL
            )""",
        ),
    ),
    Migration(
        5,
        "which PostHog project the registry serves (project.py): key/value",
        ("CREATE TABLE IF NOT EXISTS registry_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",),
    ),
    Migration(
        6,
        "the migration's ledger, per (upload hour, event hour), for the verification (ledger.py)",
        LEDGER_TABLES,
    ),
    Migration(
        7,
        "the ledger: the span of upload hours each run read (parallel range jobs apart), "
        "instead of one bookmark per stream (ledger.py)",
        LEDGER_READS_TABLES,
    ),
    Migration(
        8,
        "each user's own id, so no device alias can take it (user_ids.py): the distinct_id "
        "its events use (the user_id, or amplitude_user:<user_id> when that id was already "
        "another user's device)",
        (
            """CREATE TABLE user_ids (
                user_id TEXT PRIMARY KEY,
                distinct_id TEXT NOT NULL,
                first_seen_at TEXT NOT NULL
            ){without_rowid}""",
        ),
    ),
    Migration(
        9,
        "the ledger: records delivered at another field's time because their event_time is "
        "missing or unusable (Amplitude's charts count by event_time) (ledger.py)",
        LEDGER_NO_EVENT_TIME,
    ),
    Migration(
        10,
        "user_ids.own_device: 1 when the user's first event was on a device whose id is the "
        "user's own id, so that device's anonymous events are the user's (user_ids.py)",
        ("ALTER TABLE user_ids ADD COLUMN own_device INTEGER",),
    ),
    Migration(
        11,
        "user_ids.amplitude_id: Amplitude's id of the user at its first event, so an anonymous "
        "row that Amplitude attributes to the user (its amplitude_id) counts for the user's "
        "properties (user_ids.py)",
        (
            "ALTER TABLE user_ids ADD COLUMN amplitude_id TEXT",
            "CREATE INDEX user_ids_amplitude_id ON user_ids (amplitude_id)",
        ),
    ),
    Migration(
        12,
        "the ledger: records delivered at another field's time because their event_time is "
        "out of range (before 1970, too far ahead), by that event_time's hour, where "
        "Amplitude's charts count them (ledger.py)",
        LEDGER_MOVED_TABLES,
    ),
)

LATEST = MIGRATIONS[-1].version
assert [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1)), "versions 1, 2, 3..."
