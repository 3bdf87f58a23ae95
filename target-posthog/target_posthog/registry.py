"""The alias registry: which device PostHog has tied to which user, durable across runs.

Kept in a SQLite file or a PostgreSQL database (the `alias_registry` setting: a path, or a
`postgresql://` URL), with the schema and its migrations in `registry_schema` and the two
backends in `registry_store`. Several runs may share one registry at once (parallel range
jobs): claims are made in the database, atomically, so

- a (device, user) pair is claimed by one run only: that run sends its alias, the others
  treat the pair as known (two runs never both send it);
- a device's owner is whichever user's pair was claimed first, the same in every run's view;
  any other user seen with it is a shared device, recorded and never aliased;
- a user's own id is claimed on first sight (`user_ids`): a device whose id is a user's own id
  is never aliased (`Claim.USER_ID`), and a user whose id is already another user's device
  gets another distinct_id (`user_distinct_id`), so no two users ever share a PostHog person;
- a claim stays "in flight" (`confirmed_at` NULL) until PostHog confirmed the batch carrying
  the alias; a run that dies leaves its claims to be taken over by the next run that sees the
  pair (its rerun over the same range does), once the database can tell the holder is gone
  (PostgreSQL: the holder's session lock is released; SQLite: its process no longer exists).

A crash can repeat an alias (same uuid: PostHog dedupes it) but never lose one. A read-only
registry (dry run) reads what runs recorded and never writes. Owned by the target (one per
process), safe to use from delivery threads.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
from enum import Enum
from pathlib import Path
from typing import NamedTuple

from target_posthog.registry_store import Database, RegistryError, open_database, utc_now
from target_posthog.user_ids import COLLIDING_DEVICE_PREFIX, IDENTITY_CLAIMS, UserIds

__all__ = ["AliasRegistry", "Claim", "PendingAlias", "RegistryError"]

_logger = logging.getLogger("target-posthog")
_COLLISIONS_LOGGED = 10
_CACHE_LIMIT = 200_000  # owners kept in memory; beyond that the database answers


class Claim(Enum):
    """What to do with a (device, user) pair seen in a record."""

    NEW = "new"  # this run holds the claim: send an alias (now in flight)
    KNOWN = "known"  # already tied to this user (confirmed, or in flight in a live run)
    SHARED_DEVICE = "shared_device"  # tied to another user: PostHog would refuse; report it
    USER_ID = "user_id"  # the device id is another user's own id: an alias would merge them


class PendingAlias(NamedTuple):
    """An alias sent in a batch, recorded once PostHog confirms that batch."""

    device_id: str
    user_id: str
    first_seen_at: str


_CLAIM = (
    "INSERT INTO aliases (device_id, user_id, first_seen_at, confirmed_at, claimed_by) "
    "VALUES (?, ?, ?, NULL, ?) ON CONFLICT (device_id) DO NOTHING"
)
_TAKE_OVER = (
    "UPDATE aliases SET claimed_by = ? "
    "WHERE device_id = ? AND confirmed_at IS NULL AND claimed_by = ?"
)
_CONFIRM = (
    "INSERT INTO aliases (device_id, user_id, first_seen_at, confirmed_at, claimed_by) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET confirmed_at = "
    "excluded.confirmed_at WHERE aliases.confirmed_at IS NULL "
    "AND aliases.user_id = excluded.user_id"
)
# Works on every schema version (confirmed_at was NOT NULL before claims were stored).
_CONFIRMED_OWNERS = "SELECT device_id, user_id FROM aliases WHERE confirmed_at IS NOT NULL"


class AliasRegistry:
    """device_id -> user_id in a SQLite file or PostgreSQL; read-only (dry run) never writes.

    `database` is the open `registry_store.Database`, for other registry tables (see
    registry_schema on adding one). `location` is safe to show (no password).
    """

    def __init__(self, location: str | Path, *, read_only: bool = False) -> None:
        self.read_only = read_only
        self.run_key = secrets.randbits(62) + 1  # this run, as a claim holder (never 0)
        self._memory_lock = threading.Lock()  # the dicts and counters below
        self._owners: dict[str, str] = {}  # device -> user: a bounded cache (owners never change)
        self._owners_complete = False  # True: a miss means "not in the database" either
        self._shared_seen: set[tuple[str, str]] = set()
        self.shared_device_pairs = 0
        self.colliding_ids = 0  # ids that are one user's user_id and another user's device_id
        self.database: Database = open_database(str(location), read_only=read_only)
        self.location = self.database.location
        try:
            if read_only:
                self._readable = self.database.version() > 0
            else:
                self.database.migrate()
                self.database.hold_run(self.run_key)
                self._readable = True
            self._load_cache()
            self.user_ids = UserIds(
                self.database,
                read_only=read_only,
                version=self.database.version(),
                device_owner=self.owner_of,
            )
        except self.database.errors as exc:
            self.database.close()
            raise self.database.error("cannot be used", exc) from None
        except RegistryError:
            self.database.close()
            raise

    def __repr__(self) -> str:
        return f"AliasRegistry({self.location!r}, read_only={self.read_only})"

    def _load_cache(self) -> None:
        """A small registry's confirmed owners live wholly in memory."""
        if not self._readable:
            self._owners_complete = True
            return
        if self.count() <= _CACHE_LIMIT:
            self._owners = dict(self.database.read(_CONFIRMED_OWNERS))
            # A run sharing the registry may add claims at any time: only a dry run, alone
            # with what it read, may take a miss for "nobody".
            self._owners_complete = self.read_only

    def claim(self, device_id: str, user_id: str, seen_at: str) -> Claim:
        """Decide for one pair; a NEW pair is in flight (claimed by this run) until
        `record_confirmed`. Raises RegistryError if the database cannot be written."""
        with self._memory_lock:
            owner = self._owners.get(device_id)
            complete = self._owners_complete
        decision: Claim | None = None
        if owner is None:
            if self.read_only:
                stored = None if complete else self._stored_owner(device_id)
                if stored is None and self.user_ids.holds(device_id):
                    stored = device_id
                owner, decision = (stored, None) if stored else (user_id, Claim.NEW)
            else:
                owner, decision = self._claim_stored(device_id, user_id, seen_at)
            with self._memory_lock:
                if device_id not in self._owners:
                    self._remember(device_id, owner)
                else:  # a dry run's other thread claimed it meanwhile
                    owner, decision = self._owners[device_id], None
        if decision is Claim.NEW:
            return decision
        if owner == user_id:
            return Claim.KNOWN
        if owner == device_id:  # the device id is a user's own id
            self._note_shared_device(device_id, user_id, seen_at, colliding=True)
            return Claim.USER_ID
        self._note_shared_device(device_id, user_id, seen_at)
        return Claim.SHARED_DEVICE

    def user_distinct_id(
        self,
        user_id: str,
        seen_at: str,
        device_id: str | None = None,
        amplitude_id: str | None = None,
    ) -> str:
        """The PostHog distinct_id of a user's events: its user_id, or (when that id was
        already a device tied to another user, or one sent anonymous events under)
        `user_ids.COLLIDING_USER_PREFIX` + user_id. `device_id`, `amplitude_id`: the record's.
        Raises RegistryError if the database cannot be written."""
        try:
            distinct_id = self.user_ids.distinct_id(user_id, seen_at, device_id, amplitude_id)
        except self.database.errors as exc:
            raise self.database.error("could not be written", exc) from None
        # The device with the user's own id, used by the user itself, is aliased to the
        # user's distinct_id (one person): nothing kept apart to report.
        if (
            distinct_id != user_id
            and device_id != user_id
            and self.owner_of(user_id) != distinct_id
        ):
            anonymous = self.owner_of(user_id) is None  # no alias: a device used anonymously
            what = (
                f"a device's id used anonymously before (the user's events are sent as "
                f"{distinct_id!r})"
                if anonymous
                else None
            )
            self._note_shared_device(user_id, user_id, seen_at, colliding=True, what=what)
        return distinct_id

    def user_of_amplitude_id(self, amplitude_id: str) -> str | None:
        """The distinct_id of the user Amplitude knows by `amplitude_id` (user_ids.py), if
        any. Raises RegistryError if the database cannot be read."""
        try:
            return self.user_ids.user_of_amplitude_id(amplitude_id)
        except self.database.errors as exc:
            raise self.database.error("could not be read", exc) from None

    def device_distinct_id(self, device_id: str, seen_at: str) -> str:
        """The PostHog distinct_id of a device's anonymous events: its device_id, or (when that
        id is already a user's own id) `user_ids.COLLIDING_DEVICE_PREFIX` + device_id.
        Raises RegistryError if the database cannot be read or written."""
        try:
            distinct_id = self.user_ids.device_distinct_id(device_id, seen_at)
        except self.database.errors as exc:
            raise self.database.error("could not be read", exc) from None
        if distinct_id != device_id:
            self._note_shared_device(device_id, distinct_id, seen_at, colliding=True)
        return distinct_id

    def _claim_stored(self, device_id: str, user_id: str, seen_at: str) -> tuple[str, Claim]:
        """One transaction: claim the device, or learn its owner (taking over a dead run's
        claim of the same pair)."""
        database = self.database
        try:
            with database.transaction(serialized=IDENTITY_CLAIMS) as tx:
                if self.user_ids.holds(device_id, tx):
                    return device_id, Claim.USER_ID
                if tx.execute(_CLAIM, (device_id, user_id, seen_at, self.run_key)) == 1:
                    return user_id, Claim.NEW
                owner, confirmed_at, holder = tx.fetchone(
                    "SELECT user_id, confirmed_at, claimed_by FROM aliases WHERE device_id = ?",
                    (device_id,),
                )
                if owner != user_id:
                    return str(owner), Claim.SHARED_DEVICE
                if (
                    confirmed_at is None
                    and holder is not None
                    and int(holder) != self.run_key
                    and not database.run_is_alive(tx, int(holder))
                    and tx.execute(_TAKE_OVER, (self.run_key, device_id, holder)) == 1
                ):
                    return user_id, Claim.NEW
                return user_id, Claim.KNOWN
        except database.errors as exc:
            raise database.error("could not be written", exc) from None

    def owner_of(self, device_id: str) -> str | None:
        """The user this device is tied to (claimed first, by any run), if any."""
        with self._memory_lock:
            owner = self._owners.get(device_id)
        if owner is None and not self._owners_complete:
            owner = self._stored_owner(device_id, confirmed_only=False)
        return owner

    def _stored_owner(self, device_id: str, *, confirmed_only: bool = True) -> str | None:
        if not self._readable:
            return None
        condition = " AND confirmed_at IS NOT NULL" if confirmed_only else ""
        rows = self.database.read(
            "SELECT user_id FROM aliases WHERE device_id = ?" + condition, (device_id,)
        )
        return str(rows[0][0]) if rows else None

    def _remember(self, device_id: str, user_id: str) -> None:
        """Caller holds the memory lock."""
        if len(self._owners) >= _CACHE_LIMIT:
            self._owners.clear()  # flat memory; the database still knows them all
            self._owners_complete = False
        self._owners[device_id] = user_id

    def _note_shared_device(
        self,
        device_id: str,
        user_id: str,
        seen_at: str,
        *,
        colliding: bool = False,
        what: str | None = None,
    ) -> None:
        """Recorded in `shared_devices`: a device seen with a second user, or (`colliding`) an
        id that is one user's own id and another user's device (a row device_id = user_id: a
        user whose id was already another user's device; a row device_id, `amplitude_device:`
        device_id: a device whose anonymous events were sent under that id)."""
        with self._memory_lock:
            if (device_id, user_id) in self._shared_seen:
                return
            if len(self._shared_seen) < _CACHE_LIMIT:
                self._shared_seen.add((device_id, user_id))
            if not colliding:
                self.shared_device_pairs += 1
            else:
                self.colliding_ids += 1
                if self.colliding_ids <= _COLLISIONS_LOGGED:
                    last = self.colliding_ids == _COLLISIONS_LOGGED
                    if what is None:
                        what = (
                            f"a device's id (its anonymous events are sent as {user_id!r})"
                            if user_id.startswith(COLLIDING_DEVICE_PREFIX)
                            else "another user's device_id"
                        )
                    _logger.warning(
                        "id %r is both a user's user_id and %s: not "
                        "aliased, kept on separate PostHog persons (registry table "
                        "shared_devices%s)",
                        device_id,
                        what,
                        "; further ones only counted" if last else "",
                    )
        if self.read_only:
            return
        try:
            with self.database.transaction() as tx:
                tx.execute(
                    "INSERT INTO shared_devices VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    (device_id, user_id, seen_at),
                )
        except self.database.errors as exc:
            raise self.database.error("could not be written", exc) from None

    def record_confirmed(self, aliases: list[PendingAlias]) -> None:
        """PostHog confirmed these aliases: mark them confirmed in one transaction."""
        if not aliases or self.read_only:
            return
        now = utc_now()
        rows = [(a.device_id, a.user_id, a.first_seen_at, now, self.run_key) for a in aliases]
        try:
            with self.database.transaction() as tx:
                tx.executemany(_CONFIRM, rows)
        except self.database.errors as exc:
            raise self.database.error(
                "could not be written",
                exc,
                "The batch counts as not delivered: the next run resends it with the same uuids",
            ) from None

    def count(self) -> int:
        """Aliases PostHog confirmed (for the summary)."""
        if not self._readable:
            return 0
        return int(
            self.database.read("SELECT count(*) FROM aliases WHERE confirmed_at IS NOT NULL")[0][0]
        )

    def close(self) -> None:
        """Ends this run's hold on its claims (unconfirmed ones go to the next run)."""
        if not self.read_only:
            # Closing anyway: a runs row left behind only reads as a dead holder.
            with contextlib.suppress(*self.database.errors):
                self.database.end_run(self.run_key)
        self.database.close()
