"""The ledger as the verification reads it: per event-time hour, across every run so far.

Read-only: the verification opens the registry the migration writes (ledger.py), a SQLite file
or a PostgreSQL database, which may be in use by a running migration, and changes nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from target_posthog.counts import CountingError
from target_posthog.ledger import LEDGER_MOVED_TABLES, LEDGER_NO_EVENT_TIME, LEDGER_READS_TABLES
from target_posthog.registry_schema import MIGRATIONS
from target_posthog.registry_store import Database, RegistryError, open_database

# The first schema version with the whole ledger (ledger.py; its last table is ledger_reads).
_LEDGER_VERSION = next(m.version for m in MIGRATIONS if m.statements == LEDGER_READS_TABLES)
_NO_EVENT_TIME_VERSION = next(m.version for m in MIGRATIONS if m.statements == LEDGER_NO_EVENT_TIME)
_MOVED_VERSION = next(m.version for m in MIGRATIONS if m.statements == LEDGER_MOVED_TABLES)


@dataclass
class EventHour:
    """What the migration did with the records of one event-time hour (UTC)."""

    read: int = 0  # records read
    sent: int = 0  # PostHog events made of them, aliases aside
    updates: int = 0  # person/group update rows among the records read
    no_event_time: int = 0  # records read here at another field's time: event_time unusable
    refused: int = 0  # events PostHog refused for good (dead-lettered)
    aliases: int = 0  # `$create_alias` events PostHog confirmed, at this hour
    dead: Counter[str] = field(default_factory=Counter)  # records not sent, by reason
    written_at: str = ""  # when the newest of these counts was committed (UTC, ISO)

    @property
    def delivered(self) -> int:
        """Events PostHog confirmed: what it should hold for this hour."""
        return self.sent - self.refused + self.aliases

    @property
    def dead_lettered(self) -> int:
        return sum(self.dead.values()) + self.refused


@dataclass(frozen=True)
class Untimed:
    """Lines or records without a usable event time, by upload hour: unreadable lines set
    aside, or records dead-lettered because their time cannot be read."""

    upload_hour: str
    what: str
    count: int


@dataclass
class LedgerFigures:
    hours: dict[str, EventHour]  # 'YYYY-MM-DDTHH' -> figures
    untimed: list[Untimed]
    # Upload hours the migration has read, as [from, to) spans of 'YYYY-MM-DDTHH' keys, sorted
    # and merged (touching spans join): one per range job, or one for a single job.
    read_spans: list[tuple[str, str]]
    # Records delivered at another field's time, their event_time out of range: by the hour of
    # that event_time (where Amplitude's charts count them), the hours they were delivered at.
    moved: dict[str, Counter[str]] = field(default_factory=dict)


def read_ledger(location: str) -> LedgerFigures:
    """The ledger in the registry at `location` (a SQLite path or a PostgreSQL URL), read
    only; CountingError if there is none to read."""
    try:
        database = open_database(location, read_only=True)
    except RegistryError as exc:
        raise CountingError(str(exc)) from None
    try:
        version = database.version()
        if version == 0:
            raise CountingError(
                f"no registry at {database.location}: run the migration first, or set "
                "alias_registry to the registry it wrote"
            )
        if version < _LEDGER_VERSION:
            raise CountingError(
                f"registry {database.location} holds no ledger yet: run the migration (this "
                "version of target-posthog) once, then verify"
            )
        figures = _figures(database, version >= _NO_EVENT_TIME_VERSION)
        # A registry the migration has not opened since migration 12 (read only here) has none.
        if version >= _MOVED_VERSION:
            for chart, event, records in database.read(
                "SELECT chart_hour, event_hour, sum(records) FROM ledger_moved "
                "GROUP BY chart_hour, event_hour"
            ):
                figures.moved.setdefault(chart, Counter())[event] += int(records)
        return figures
    except RegistryError as exc:
        raise CountingError(str(exc)) from None
    except database.errors as exc:
        raise CountingError(str(database.error("cannot be read", exc))) from None
    finally:
        database.close()


def _figures(db: Database, with_no_event_time: bool) -> LedgerFigures:
    hours: dict[str, EventHour] = {}
    untimed: list[Untimed] = []

    def hour(key: str) -> EventHour:
        return hours.setdefault(key, EventHour())

    # A registry the migration has not opened since migration 9 (read only here) has none.
    untimed_column = "no_event_time" if with_no_event_time else "0"
    rows = db.read(
        "SELECT upload_hour, event_hour, records_read, events_sent, updates, unreadable, "
        f"{untimed_column}, written_at FROM ledger_hours"
    )
    for upload, event, read, sent, updates, unreadable, no_event_time, written_at in rows:
        if unreadable:
            untimed.append(Untimed(upload, "unreadable lines set aside", unreadable))
        if not event:
            continue
        figures = hour(event)
        figures.read += read
        figures.sent += sent
        figures.updates += updates
        figures.no_event_time += no_event_time
        figures.written_at = max(figures.written_at, written_at)
    for upload, event, reason, records in db.read(
        "SELECT upload_hour, event_hour, reason, records FROM ledger_dead_letters"
    ):
        if event:
            hour(event).dead[reason] += records
        else:
            untimed.append(Untimed(upload, f"dead-lettered: {reason}", records))
    for event, count in db.read(
        "SELECT event_hour, count(*) FROM ledger_refused GROUP BY event_hour"
    ):
        hour(event).refused += count
    for event, count in db.read(
        "SELECT substr(first_seen_at, 1, 13), count(*) FROM aliases "
        "WHERE confirmed_at IS NOT NULL GROUP BY 1"
    ):
        hour(event).aliases += count
    spans: list[tuple[str, str]] = []
    for low, high in db.read("SELECT read_from, read_to FROM ledger_reads ORDER BY read_from"):
        if spans and low <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], high))
        else:
            spans.append((low, high))
    untimed.sort(key=lambda item: item.upload_hour)
    return LedgerFigures(hours, untimed, spans)
