"""Person and group properties: newest by event time, kept in the registry, sent as updates.

PostHog applies `$set` and `$group_set` in the order it ingests events, not by event time
(shared/reference/posthog-capture-api.md section 3, "Order"; PostHog issue 37000), while an
Amplitude export is ordered by upload time and the target delivers batches concurrently. So
events carry no `$set`, and properties travel this way instead:

1. `observe_person` / `observe_group` (main thread, per record): the newest `user_properties`
   (`group_properties`) snapshot by (event time, event uuid) and every name a snapshot held
   (profile_state.py); for the person context, the newest value of each property; for
   `$initial_*`, the earliest. Merging this way is idempotent and order-free, so a record seen
   twice (a resumed run, a rerun) or in any order gives the same result.
2. `sync` (before every STATE is released): the observations are merged into the registry,
   so a STATE never vouches for records whose properties are not stored.
3. `updates` (once every event of the run is confirmed): first the properties of every device
   now tied to a user (an alias PostHog confirmed) are folded into that user's, newest by event
   time (`fold_devices`); then one `$set` event per person and one
   `$groupidentify` per group whose merged values changed since PostHog last confirmed them,
   with a uuid derived from the values and the version PostHog last confirmed (a re-send
   after a crash is the same event; profile_updates.py).
   `record_sent` marks them once PostHog confirms; a rerun finds nothing changed.

With `existing_properties: keep` (a project that already has live data) and a reader
(person_reader.py), the properties each person and group held before its first update are
left out of every update, and the rest is the migration's own. Without a reader, person
values go in `$set_once` (they only fill what is missing, nothing is unset) and group updates
are withheld (PostHog has no set-once for groups), both counted and logged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson

from target_posthog.deadletter import DeadLetters
from target_posthog.mapping import Mapped
from target_posthog.person_reader import LiveNames, PostHogPersonReader
from target_posthog.profile_rows import PAGE, PendingProfile, StoredRows, record_sent, unsent_pages
from target_posthog.profile_state import Observed, State
from target_posthog.profile_updates import (
    GROUP,
    KEEP,
    OVERWRITE,
    PERSON,
    UPDATE_MARKER,
    ExistingProperties,
    group_update,
    person_update,
    set_aside_property,
)
from target_posthog.registry_store import MEMORY, Transaction, open_database

__all__ = ["KEEP", "OVERWRITE", "UPDATE_MARKER", "PendingProfile", "Profiles"]

_T = TypeVar("_T")
_logger = logging.getLogger("target-posthog")

# The table `profiles` is migration 3 in registry_schema.py (its columns are described there).
_CHUNK = 500  # keys per SELECT ... IN (...)
_PAGE = PAGE  # updates read at a time
# Observations held in memory before they are merged into the file even without a STATE
# (merging early is harmless: it is idempotent), so memory stays flat between STATEs.
PENDING_LIMIT = 50_000
# Person rows of devices tied by a confirmed alias to a user (not a user's own id: those rows
# have device_id = user_id), with the user.
_TIED_DEVICES = (
    "SELECT p.profile_key, a.user_id, p.state FROM profiles p "
    "JOIN aliases a ON a.device_id = p.profile_key "
    "WHERE p.kind = ? AND a.confirmed_at IS NOT NULL AND a.user_id <> p.profile_key LIMIT ?"
)


class Profiles:
    """The person and group properties of the migration, in the registry (the same SQLite
    file or PostgreSQL database as the aliases: `location` is the `alias_registry` setting)."""

    def __init__(
        self,
        location: str | Path,
        *,
        existing: ExistingProperties = OVERWRITE,
        read_only: bool = False,
        dead_letters: DeadLetters | None = None,
        reader: PostHogPersonReader | None = None,
    ) -> None:
        """`dead_letters`: where properties too large for PostHog are set aside; `reader`
        (keep): what PostHog's persons hold (person_reader.py; closed by `close`)."""
        self.existing = existing
        self._live = None if reader is None else LiveNames(reader)
        self._dead_letters = dead_letters
        self.properties_set_aside = 0
        self._lock = threading.Lock()  # the pending observations
        self._persons: dict[str, Observed] = {}
        self._groups: dict[str, Observed] = {}
        self.person_updates_sent = 0
        self.group_updates_sent = 0
        self.group_updates_withheld = 0
        # A dry run works alike on an in-memory copy of the schema, and keeps nothing. It
        # copies in, read-only, the rows earlier runs stored (`_source`) of the persons and
        # groups it touches, and every row still unsent: it shows exactly the updates a real
        # run would send now, not every person it sees as if PostHog had none.
        self._read_only = read_only
        self._source: StoredRows | None = None
        self._database = open_database(MEMORY if read_only else str(location))
        try:
            self._database.migrate()
            if read_only:
                self._source = StoredRows.open(str(location))
        except self._database.errors as exc:
            self._database.close()
            raise self._database.error("cannot be used", exc) from None

    # --- observing (main thread) -------------------------------------------------------

    def observe(self, mapped: Mapped) -> None:
        """The person and group properties one mapped record shows."""
        person_key = mapped.person_key
        if person_key is not None and (mapped.person or mapped.initial or mapped.snapshot):
            self.observe_person(
                person_key, mapped.order, mapped.person, mapped.initial, mapped.snapshot
            )
        if mapped.groups:
            for group_type, group_key, values in mapped.groups:
                self.observe_group(group_type, group_key, mapped.order, values, person_key)
        if len(self._persons) + len(self._groups) > PENDING_LIMIT:
            self.sync()

    def observe_person(
        self,
        distinct_id: str,
        order: str,
        values: dict[str, Any] | None,
        initial: dict[str, Any] | None,
        snapshot: dict[str, Any] | None = None,
    ) -> None:
        """One record's person properties (`order` = its timestamp + uuid): context `values`
        (newest each), `initial` (earliest each) and its `user_properties` `snapshot`."""
        with self._lock:
            held = self._persons.get(distinct_id)
            if held is None:
                held = self._persons[distinct_id] = Observed(distinct_id)
            if values:
                held.newest.add(order, values)
            if initial:
                held.initial.add(order, initial)
            if snapshot:
                held.snapshot.add(order, snapshot)

    def observe_group(
        self, group_type: str, group_key: str, order: str, values: dict[str, Any], by: str | None
    ) -> None:
        """One record's properties of one group; `by` is the record's distinct_id (None: the
        record names no person, a `$groupidentify` row without ids)."""
        key = orjson.dumps([group_type, group_key]).decode()
        with self._lock:
            held = self._groups.get(key)
            if held is None:
                held = self._groups[key] = Observed("")
            held.snapshot.add(order, values)
            if by is not None and order > held.by_order:
                held.by, held.by_order = by, order

    @property
    def pending(self) -> int:
        """Persons and groups observed since the last `sync`."""
        return len(self._persons) + len(self._groups)

    # --- storing -------------------------------------------------------------------------

    def sync(self) -> None:
        """Merge the observations so far into the registry (before a STATE is released).

        Raises `RegistryError` when the file cannot be written (the STATE is then not released).
        """
        with self._lock:
            persons, self._persons = self._persons, {}
            groups, self._groups = self._groups, {}
        if persons or groups:

            def merge_both(tx: Transaction) -> None:
                self._merge(tx, PERSON, persons)
                self._merge(tx, GROUP, groups)

            self._write(merge_both)

    def _write(self, change: Callable[[Transaction], _T]) -> _T:
        """One transaction: all of `change` is stored, or none of it; what `change` returned."""
        database = self._database
        try:
            with database.transaction(serialized="profiles") as tx:  # merges read, then write
                return change(tx)
        except database.errors as exc:
            raise database.error(
                "could not be written",
                exc,
                "Nothing after the last STATE counts as delivered: the next run resends it "
                "with the same uuids",
            ) from None

    def _merge(self, tx: Transaction, kind: str, observed: dict[str, Observed]) -> None:
        keys = list(observed)
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            if self._source is not None:
                self._source.copy(tx, kind, chunk, marks)
            stored = dict(
                tx.fetchall(
                    f"SELECT profile_key, state FROM profiles "
                    f"WHERE kind = ? AND profile_key IN ({marks})",
                    (kind, *chunk),
                )
            )
            inserts, updates = [], []
            for key in chunk:
                text = stored.get(key)
                state = State.load(text, key)
                changed, moved = state.merge(observed[key])
                if not (changed or moved):
                    continue
                encoded = state.dump()
                if text is None:
                    inserts.append((kind, key, encoded))
                else:
                    updates.append((encoded, 1 if changed else 0, kind, key))
            tx.executemany("INSERT INTO profiles VALUES (?, ?, ?, 1, 0)", inserts)
            tx.executemany(
                "UPDATE profiles SET state = ?, version = version + ? "
                "WHERE kind = ? AND profile_key = ?",
                updates,
            )

    # --- sending -------------------------------------------------------------------------

    def _write_each(self, changes: Iterator[Callable[[Transaction], None]]) -> None:
        for change in changes:
            self._write(change)

    def fold_devices(self) -> int:
        """Fold the properties of devices tied to a user into the user's; the devices folded.

        A device's anonymous events (before and after its user logged in) are the user's in
        PostHog once its alias merged the device's person into the user's, and in Amplitude,
        which merges a device's anonymous history into the user who logs in on it. So the user
        ends with the newest values of both, by event time. A device is tied to the user its
        alias (confirmed by PostHog) names: the first user seen with it. Its row is then
        deleted: later anonymous events of the device are folded again by the next run's end.
        """
        folded = 0
        while True:  # a page at a time, each page one transaction (folding twice is harmless)
            count = self._write(self._fold_page)
            folded += count
            if count < _PAGE:
                return folded

    def _fold_page(self, tx: Transaction) -> int:
        rows = tx.fetchall(_TIED_DEVICES, (PERSON, _PAGE))
        self._fold_rows(tx, rows)
        return len(rows)

    def _fold_in_memory(self, owner_of: Callable[[str], str | None]) -> None:
        """A dry run: its aliases live only in the registry's memory, so ask it."""

        def fold(tx: Transaction) -> None:
            tied = []
            for key, text in tx.fetchall(
                "SELECT profile_key, state FROM profiles WHERE kind = ?", (PERSON,)
            ):
                owner = owner_of(key)
                if owner is not None and owner != key:
                    tied.append((key, owner, text))
            self._fold_rows(tx, tied)

        self._write(fold)

    def _fold_rows(self, tx: Transaction, rows: list[tuple[str, str, str]]) -> None:
        """Merge each (device, owner, state) into the owner's row; delete the device's."""
        owners: dict[str, Observed] = {}
        for device, owner, text in rows:
            state = State.load(text, device)
            held = owners.get(owner)
            if held is None:
                held = owners[owner] = Observed(owner)
            held.newest.merge(state.newest)
            held.initial.merge(state.initial)
            held.snapshot.merge(state.snapshot)
        self._merge(tx, PERSON, owners)
        tx.executemany(
            "DELETE FROM profiles WHERE kind = ? AND profile_key = ?",
            [(PERSON, device) for device, _, _ in rows],
        )

    def updates(
        self, owner_of: Callable[[str], str | None]
    ) -> Iterator[tuple[dict[str, Any], PendingProfile]]:
        """The updates PostHog has not confirmed yet, each with what to record once it has.

        Devices tied to a user are folded into the user first (`fold_devices`).
        `owner_of(device_id)` names the user a device is claimed by: a device whose alias is
        not confirmed yet gets no update of its own (its person becomes the user's once the
        alias lands; the run that confirms it folds it).
        """
        self.sync()
        if self._read_only:
            if self._source is not None:
                self._write_each(self._source.copy_unsent())
            self._fold_in_memory(owner_of)
        else:
            self.fold_devices()
        # A page at a time: millions of persons never sit in memory at once.
        changed_after_fill = 0
        for rows in unsent_pages(self._database):
            settled: list[PendingProfile] = []
            states = {(kind, key): State.load(text, key) for kind, key, text, *_ in rows}
            unknown = self._learn_live(states, owner_of)
            for kind, key, _, version, sent_version in rows:
                state = states[(kind, key)]
                if kind == PERSON:
                    if owner_of(key) not in (None, key):
                        settled.append(PendingProfile(kind, key, version))
                        continue
                    if (kind, key) in unknown:  # PostHog could not say what it holds: next run
                        continue
                    if self.existing == KEEP and state.live is None and sent_version > 0:
                        changed_after_fill += 1
                    update, set_aside = person_update(key, state, self.existing, sent_version)
                    for name, value in set_aside.items():
                        self.properties_set_aside += 1
                        set_aside_property(self._dead_letters, key, name, value)
                    yield update, PendingProfile(kind, key, version)
                elif (kind, key) in unknown:
                    continue
                elif self.existing == KEEP and state.live is None:  # no reader: no fill-only
                    self.group_updates_withheld += 1
                else:
                    update = group_update(key, state, self.existing, sent_version)
                    yield update, PendingProfile(kind, key, version)
            self.record_sent(settled, count=False)
        if changed_after_fill:
            _logger.warning(
                "existing_properties is keep: %d persons have history that changed since "
                "their properties were first filled; their changed values are sent as "
                "$set_once, so PostHog keeps the value it holds (keep cannot tell the "
                "migration's earlier value from a live one without reading PostHog)",
                changed_after_fill,
            )

    def _learn_live(
        self, states: dict[tuple[str, str], State], owner_of: Callable[[str], str | None]
    ) -> set[tuple[str, str]]:
        """keep with a reader: what each person and group held before its first update, read
        once and stored (person_reader.LiveNames); those PostHog could not be asked about."""
        if self.existing != KEEP or self._live is None:
            return set()
        learned, unknown = self._live.learn(states, owner_of)
        rows = [(states[(kind, key)].dump(), kind, key) for kind, key in learned]
        if rows:
            self._write(
                lambda tx: tx.executemany(
                    "UPDATE profiles SET state = ? WHERE kind = ? AND profile_key = ?", rows
                )
            )
        return unknown

    def record_sent(self, sent: list[PendingProfile], *, count: bool = True) -> None:
        """PostHog confirmed these updates: a rerun does not send them again."""
        if not sent:
            return
        self._write(lambda tx: record_sent(tx, sent))
        if count:
            for item in sent:
                if item.kind == PERSON:
                    self.person_updates_sent += 1
                else:
                    self.group_updates_sent += 1

    def close(self) -> None:
        self._database.close()
        if self._live is not None:
            self._live.close()
        if self._source is not None:
            self._source.close()
