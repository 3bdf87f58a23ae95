"""Each user's own id, claimed in the registry so that no device alias can take it.

PostHog has one namespace for distinct_ids, Amplitude two (user ids, device ids), and a merge
in PostHog is permanent. An id that is one user's `user_id` and another user's `device_id`
would join the two users' persons: through the alias (the device's person, which holds the
first user's events, merged into the second user's), or through events alone (once the device
is aliased to ann, distinct_id "abc" is ann's person, so user "abc"'s events land there).

So the first time a run sees a user, the registry records its id (table `user_ids`, in the
same database as the aliases and under the same lock as device claims, so parallel runs agree):

- an id that is no device yet stays the user's distinct_id, and no device alias may take it
  later (`AliasRegistry.claim` answers `Claim.USER_ID`);
- an id that is already a device tied to another user cannot be the user's: its events go to
  `COLLIDING_USER_PREFIX + user_id`, now and in every later run (the decision is stored).

- a device whose id is already a user's own id (user "abc" seen first, then anonymous events
  of device "abc") cannot use that id either: PostHog's "abc" is user abc's person, so the
  device's anonymous events and properties would become user abc's for good. They go to
  `COLLIDING_DEVICE_PREFIX + device_id` (never aliased: `AliasRegistry.claim` refuses any pair
  with that device). A device seen anonymously before any user claims its id keeps it (the
  events were sent already): a user with that id seen later in the same run gets
  `COLLIDING_USER_PREFIX + user_id` (as above), and so does one first seen in a later run:
  the device's first anonymous use records that decision in `user_ids`. So a re-send of the
  same events (after `meltano state clear`) chooses the same distinct_ids as the first send.

- a user's own device: a user first seen on a device whose id is its own user_id
  (`user_id` "zz2", `device_id` "zz2": apps that set one to the other) is one person with
  that device; the claim records it (`own_device`), and the device's anonymous events keep
  the id "zz2", the user's person. Decided at the user's first sight only, so a re-send
  chooses the same.

- Amplitude's `amplitude_id` names a user, not a device: an anonymous row of a device shared by
  two users carries the amplitude_id of the user Amplitude attributes it to (the one who used
  the device last). The claim records the user's amplitude_id (`user_of_amplitude_id`), so such
  a row's properties count for that user, in any later run too.

All are colliding ids: recorded in `shared_devices` (by the registry), logged, counted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from target_posthog.registry_store import Database, Transaction

COLLIDING_USER_PREFIX = "amplitude_user:"
COLLIDING_DEVICE_PREFIX = "amplitude_device:"
# The transactions that claim ids (users' and devices'): one at a time on PostgreSQL, so a
# user claim and a device claim of the same id never both succeed (SQLite's write
# transactions are serialized anyway).
IDENTITY_CLAIMS = "identity"
FIRST_VERSION = 8  # registry_schema migration that made the table
OWN_DEVICE_VERSION = 10  # ... and the one that added own_device
AMPLITUDE_ID_VERSION = 11  # ... and amplitude_id
_V = TypeVar("_V")
_CACHE_LIMIT = 200_000  # users kept in memory; beyond that the database answers

_CLAIM = (
    "INSERT INTO user_ids (user_id, distinct_id, first_seen_at) VALUES (?, ?, ?) "
    "ON CONFLICT (user_id) DO NOTHING"
)
_CLAIM_OWN = (
    "INSERT INTO user_ids (user_id, distinct_id, first_seen_at, own_device) VALUES (?, ?, ?, 1) "
    "ON CONFLICT (user_id) DO NOTHING"
)
_CLAIM_AMPLITUDE_ID = "UPDATE user_ids SET amplitude_id = ? WHERE user_id = ?"


class UserIds:
    """user_id -> the distinct_id its events use; claims in `database` (read-only: reads)."""

    def __init__(
        self,
        database: Database,
        *,
        read_only: bool,
        version: int,
        device_owner: Callable[[str], str | None],
    ) -> None:
        """`device_owner(id)`: the user a device is tied to, as the registry knows it (a dry
        run's claims live only in its memory)."""
        self._database = database
        self._device_owner = device_owner
        self._read_only = read_only
        self._readable = version >= FIRST_VERSION
        self._lock = threading.Lock()
        self._distinct: dict[str, str] = {}  # a bounded cache of decisions (they never change)
        # device id -> its anonymous events' distinct_id (a device whose id no user held when
        # first asked keeps it: its events were sent under it already).
        self._devices: dict[str, str] = {}
        self._own_readable = version >= OWN_DEVICE_VERSION
        self._own: set[str] = set()  # users whose own device is their id (claims of this run)
        self._amplitude_readable = version >= AMPLITUDE_ID_VERSION
        # amplitude_id -> the user's distinct_id (None: no user known by it)
        self._by_amplitude_id: dict[str, str | None] = {}
        if self._readable:
            stored = database.read("SELECT count(*) FROM user_ids")[0][0]
            if stored <= _CACHE_LIMIT:
                self._distinct = dict(database.read("SELECT user_id, distinct_id FROM user_ids"))

    def distinct_id(
        self,
        user_id: str,
        seen_at: str,
        device_id: str | None = None,
        amplitude_id: str | None = None,
    ) -> str:
        """The user's distinct_id, claimed on first sight (`device_id`: the record's, which
        is the user's own device when equal to `user_id`; `amplitude_id`: the record's,
        recorded with the claim). Raises the database's errors."""
        distinct = self._distinct.get(user_id)  # the common case: one dict read, no lock
        if distinct is not None:
            if amplitude_id is not None and self._by_amplitude_id.get(amplitude_id) is None:
                self._cached(self._by_amplitude_id, amplitude_id, distinct)
            return distinct
        if self._read_only:
            distinct = self._stored(user_id)
            if distinct is None:
                distinct = self._apart(user_id, self._decide(self._device_owner, user_id))
                if device_id == user_id == distinct:
                    self._own.add(user_id)
        else:
            with self._database.transaction(serialized=IDENTITY_CLAIMS) as tx:
                distinct = self._claim(tx, user_id, seen_at, own=device_id == user_id)
                if amplitude_id is not None and self._amplitude_readable:
                    tx.execute(_CLAIM_AMPLITUDE_ID, (amplitude_id, user_id))
        if amplitude_id is not None:
            self._cached(self._by_amplitude_id, amplitude_id, distinct)
        return self._cached(self._distinct, user_id, distinct, replace=False)

    def _claim(self, tx: Transaction, user_id: str, seen_at: str, *, own: bool) -> str:
        def device_owner(device_id: str) -> str | None:
            rows = tx.fetchall("SELECT user_id FROM aliases WHERE device_id = ?", (device_id,))
            return str(rows[0][0]) if rows else None

        distinct = self._apart(user_id, self._decide(device_owner, user_id))
        own = own and distinct == user_id and self._own_readable
        if tx.execute(_CLAIM_OWN if own else _CLAIM, (user_id, distinct, seen_at)) == 1:
            if own:
                with self._lock:
                    if len(self._own) < _CACHE_LIMIT:
                        self._own.add(user_id)
            return distinct
        return str(tx.fetchone(_DISTINCT_OF, (user_id,))[0])  # another run claimed it first

    def _apart(self, user_id: str, distinct: str) -> str:
        """A user whose id this run already sent as an anonymous device's distinct_id (device
        "abc" used anonymously, then user "abc" seen): its events go apart too."""
        if distinct == user_id and self._devices.get(user_id) == user_id:
            return COLLIDING_USER_PREFIX + user_id
        return distinct

    @staticmethod
    def _decide(device_owner: Callable[[str], str | None], user_id: str) -> str:
        """The user's own id, unless that id is already a device tied to another user."""
        owner = device_owner(user_id)
        return user_id if owner in (None, user_id) else COLLIDING_USER_PREFIX + user_id

    def _stored(self, user_id: str) -> str | None:
        if not self._readable:
            return None
        rows = self._database.read(_DISTINCT_OF, (user_id,))
        return str(rows[0][0]) if rows else None

    def device_distinct_id(self, device_id: str, seen_at: str) -> str:
        """The distinct_id of a device's anonymous events: its id, or (when the id is a user's
        own id) `COLLIDING_DEVICE_PREFIX` + id. A device that keeps its id reserves
        `COLLIDING_USER_PREFIX` + id for a user with that id seen in any later run (a row in
        `user_ids`), so a re-send of the device's events (after `meltano state clear`) makes
        the same choice as the first send. Raises the database's errors."""
        distinct = self._devices.get(device_id)  # the common case: one dict read
        if distinct is None:
            if self._read_only:
                held = self.holds(device_id)
            else:
                with self._database.transaction(serialized=IDENTITY_CLAIMS) as tx:
                    held = self.holds(device_id, tx)
                    if not held:
                        user = COLLIDING_USER_PREFIX + device_id
                        tx.execute(_CLAIM, (device_id, user, seen_at))
            if held and not self._owns(device_id):
                distinct = COLLIDING_DEVICE_PREFIX + device_id
            else:
                distinct = device_id
            self._cached(self._devices, device_id, distinct)
        return distinct

    def _cached(self, cache: dict[str, _V], key: str, value: _V, *, replace: bool = True) -> _V:
        """Put `value` in one of the bounded caches (cleared when full: flat memory, the
        database still knows them all); the value the cache holds (`replace` False: the
        first one put)."""
        with self._lock:
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            if replace:
                cache[key] = value
            return cache.setdefault(key, value)

    def user_of_amplitude_id(self, amplitude_id: str) -> str | None:
        """The distinct_id of the user Amplitude knows by `amplitude_id`, if a run saw one
        (this run, or any run recorded in the registry). Raises the database's errors."""
        try:
            return self._by_amplitude_id[amplitude_id]
        except KeyError:
            pass
        distinct: str | None = None
        if self._amplitude_readable:
            rows = self._database.read(
                "SELECT distinct_id FROM user_ids WHERE amplitude_id = ? LIMIT 1", (amplitude_id,)
            )
            distinct = str(rows[0][0]) if rows else None
        return self._cached(self._by_amplitude_id, amplitude_id, distinct, replace=False)

    def _owns(self, user_id: str) -> bool:
        """True when the user's first event was on its own device (a device id = its id)."""
        if user_id in self._own:
            return True
        if not self._own_readable:
            return False
        rows = self._database.read("SELECT own_device FROM user_ids WHERE user_id = ?", (user_id,))
        return bool(rows) and rows[0][0] == 1

    def holds(self, device_id: str, tx: Transaction | None = None) -> bool:
        """True when `device_id` is a user's own id (so no device alias may take it); inside a
        device claim's transaction when `tx` is given."""
        if self._distinct.get(device_id) == device_id:
            return True
        if tx is not None:
            rows = tx.fetchall(_DISTINCT_OF, (device_id,))
        elif self._readable:
            rows = self._database.read(_DISTINCT_OF, (device_id,))
        else:
            return False
        return bool(rows) and rows[0][0] == device_id


_DISTINCT_OF = "SELECT distinct_id FROM user_ids WHERE user_id = ?"
