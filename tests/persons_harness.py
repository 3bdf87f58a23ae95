"""The persons and groups tests' scenario and truth: an Amplitude export with what breaks naive
migrations (late uploads, a device shared by two users, placeholder user ids on different
devices, ids that are both a user's and a device's, group properties that change over time),
what Amplitude shows for it computed from the export alone, and a comparison with the persons
and groups the PostHog stand-in built by PostHog's rules (tests/testbed/persons.py)."""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.target_support import (
    as_tap_record,
    messages_with_states,
    run_target,
    target_config,
)
from tests.target_support import (
    posthog as posthog,  # the fixture
)
from tests.testbed.persons import PersonView
from tests.testbed.posthog import PostHogStandIn

BEGIN = datetime(2024, 4, 1, tzinfo=UTC)
# What SDKs send instead of no user id, near misses included (all name nobody).
PLACEHOLDERS = (
    "undefined",
    "undefined",
    "null",
    "None",
    "0",
    "NULL",
    '"undefined"',
    "-1",
    "0.0",
    "00",
    "(null)",
    "NULL ",
    "'undefined'",
    "00000000000000000000000000000000",
    "[object Object]",
    "",
    "  ",
)
COMPANIES = ("acme-corp", "globex", "initech")


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


@dataclass(frozen=True)
class Export:
    records: list[dict[str, Any]]  # in upload order, as the tap delivers them


def build_export(seed: int = 5, users: int = 24, events: int = 900) -> Export:
    """Raw Amplitude records over 10 days; returned in upload (export) order.

    Besides late uploads, placeholders and groups: devices used anonymously before and after
    their user logs in (whose properties are the user's once tied), a device shared by two
    users, devices never tied to anyone, and two user ids equal to another user's device id:
    "dev-3-0" seen before that device is tied to user-3, "dev-5-0" only after dev-5-0 is
    tied to user-5.
    """
    rng = random.Random(seed)
    devices = {u: [f"dev-{u}-{k}" for k in range(rng.choice((1, 1, 2, 3)))] for u in range(users)}
    devices[1].append("dev-0-0")  # user 1 also logs in on user 0's first device (a family tablet)
    companies = {u: COMPANIES[u % 3] for u in range(users) if u % 4 != 3}
    raw: list[tuple[datetime, dict[str, Any]]] = []

    def make(n: int, moment: datetime, user_id: str | None, device: str) -> dict[str, Any]:
        step = int((moment - BEGIN).total_seconds())  # grows with event time
        user_properties: dict[str, Any] = {
            "plan": f"plan-{step % 7}",
            "step": step,
            "initial_utm_source": f"src-{step}",  # earliest wins
        }
        if rng.random() < 0.3:
            user_properties["nickname"] = f"nick-{step}"  # only some events carry it
        record_: dict[str, Any] = {
            "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "event_type": rng.choice(("Song Played", "Search", "Checkout")),
            "event_time": _time(moment),
            "user_id": user_id,
            "device_id": device,
            "platform": "iOS",
            "os_name": "ios",
            "os_version": f"17.{step % 5}",
            "city": f"City-{step % 11}",
            "user_properties": user_properties,
            "event_properties": {"n": n},
            "session_id": -1,
        }
        if n % 9 == 0:  # person operations inside the export's properties: not PostHog's to apply
            record_["event_properties"].update(
                {"$set": {"plan": "stale", "from_properties": True}, "$unset": ["email"]}
            )
        return record_

    for n in range(events):
        moment = BEGIN + timedelta(seconds=rng.randrange(10 * 86_400), microseconds=n)
        u = rng.randrange(users)
        device = rng.choice(devices[u])
        anonymous = rng.random() < 0.2
        # Some SDKs send a placeholder instead of no user id.
        user_id: str | None = None if anonymous else f"user-{u}"
        if anonymous and rng.random() < 0.5:
            user_id = rng.choice(PLACEHOLDERS)
        if anonymous and rng.random() < 0.1:
            device = f"lurker-{u % 3}"  # a device nobody ever logs in on
        record_ = make(n, moment, user_id, device)
        company = companies.get(u)
        if company and not anonymous:
            record_["groups"] = {"company": [company]}
            group = {"name": company.title(), "seats": step_of(record_)}
            if rng.random() < 0.2:  # a property the group has only at some times
                group["tier"] = f"tier-{n % 3}"
            record_["group_properties"] = {"company": {company: group}}
        # Most upload within a minute; some were offline for 3 to 5 days.
        lag = timedelta(days=rng.uniform(3, 5)) if rng.random() < 0.15 else timedelta(seconds=30)
        raw.append((moment + lag, record_))
    raw.sort(key=lambda item: item[0])
    # Colliding ids: a user whose user_id is another user's device id, before and after that
    # device is tied to its user, each with a device of its own (used anonymously too).
    first = BEGIN - timedelta(days=1)
    early = [
        make(events + k, first + timedelta(minutes=k), user, "own-dev-a")
        for k, user in enumerate(("dev-3-0", None, "dev-3-0"))
    ]
    last = BEGIN + timedelta(days=11)
    late = [
        make(events + 10 + k, last + timedelta(minutes=k), user, "own-dev-b")
        for k, user in enumerate(("dev-5-0", None, "dev-5-0"))
    ]
    ordered = [*early, *(r for _, r in raw), *late]
    return Export([as_tap_record(r) for r in ordered])


def step_of(record_: dict[str, Any]) -> int:
    return int(record_["user_properties"]["step"])


@dataclass
class Truth:
    """What Amplitude shows, from the export alone (newest by event time, ties by uuid), with
    the documented identity rules: an id belongs to whoever claimed it first in upload order
    (a user_id claims itself, a (device, user) pair claims the device for the user)."""

    user_properties: dict[str, dict[str, Any]]  # user_id -> property -> value
    initial_source: dict[str, str]  # user_id -> earliest initial_utm_source
    newest_city: dict[str, str]
    device_owner: dict[str, str]  # device -> the user it is tied to (not a user's own id)
    device_properties: dict[str, dict[str, Any]]  # devices tied to nobody: their own person
    groups: dict[tuple[str, str], dict[str, Any]]
    removed: dict[str, set[str]]  # user properties older snapshots had and the newest lacks


def _user_of(r: dict[str, Any]) -> str | None:
    user = r["user_id"]
    return None if user is None or user in PLACEHOLDERS else user


def _anonymous_owner(owner: dict[str, str], device: str) -> str:
    held = owner.get(device)
    if held is None:
        return device
    return f"amplitude_device:{device}" if held == device else held


def truth_of(export: Export) -> Truth:
    owner: dict[str, str] = {}  # id -> the user holding it
    for r in export.records:  # upload order
        user, device = _user_of(r), r["device_id"]
        if user is not None:
            owner.setdefault(user, user)
            if device != user:
                owner.setdefault(device, user)
    # Amplitude's user_properties (group_properties) on an event is the user's (group's) whole
    # snapshot at that time: the newest one is what Amplitude shows; initial_* are first-touch.
    newest: dict[str, dict[str, tuple[str, Any]]] = defaultdict(dict)
    snapshot: dict[str, tuple[str, dict[str, Any]]] = {}
    seen: dict[str, set[str]] = defaultdict(set)
    earliest: dict[str, tuple[str, str]] = {}
    city: dict[str, tuple[str, str]] = {}
    groups: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    group_seen: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in export.records:
        order = r["event_time"] + r["uuid"]
        # Whose properties: the user's; an anonymous event's, its device's user (the device's
        # own when it is tied to nobody, or when its id is a user's own id: the device's
        # events then go to amplitude_device:<id>).
        who = _user_of(r) or _anonymous_owner(owner, r["device_id"])
        for key, value in r["user_properties"].items():
            # initial_*: first-touch values, the earliest event's
            if key.startswith("initial_") and (
                key not in newest[who] or order < newest[who][key][0]
            ):
                newest[who][key] = (order, value)
        plain = {k: v for k, v in r["user_properties"].items() if not k.startswith("initial_")}
        seen[who] |= plain.keys()
        if who not in snapshot or order > snapshot[who][0]:
            snapshot[who] = (order, plain)
        source = r["user_properties"]["initial_utm_source"]
        if who not in earliest or order < earliest[who][0]:
            earliest[who] = (order, source)
        if who not in city or order > city[who][0]:
            city[who] = (order, r["city"])
        for kind, by_key in (r.get("group_properties") or {}).items():
            for key, values in by_key.items():
                held = groups.get((kind, key))
                if held is None or order > held[0]:
                    groups[(kind, key)] = (order, values)
                group_seen[(kind, key)] |= values.keys()
    users = {user for r in export.records if (user := _user_of(r)) is not None}
    devices = {r["device_id"] for r in export.records}
    untied = devices - owner.keys()
    untied |= {_anonymous_owner(owner, d) for d in devices if owner.get(d) == d}

    def final(who: str) -> dict[str, Any]:
        return {**{k: v for k, (_, v) in newest[who].items()}, **snapshot[who][1]}

    return Truth(
        {u: final(u) for u in users},
        {u: earliest[u][1] for u in users},
        {u: city[u][1] for u in users},
        {d: u for d, u in owner.items() if d != u and d in devices},
        {d: final(d) for d in untied},
        # PostHog's group update cannot remove a property: a removed one is set to null.
        {g: {**dict.fromkeys(group_seen[g]), **values} for g, (_, values) in groups.items()},
        {who: seen[who] - snapshot[who][1].keys() for who in snapshot},
    )


def persons_of_users(standin: PostHogStandIn) -> dict[str, dict[frozenset[str], PersonView]]:
    """Each Amplitude user -> the PostHog persons its events ended on (by `$amplitude_user_id`,
    whatever distinct_id carried them)."""
    found: dict[str, dict[frozenset[str], PersonView]] = defaultdict(dict)
    for event in standin.events:
        user = event["properties"].get("$amplitude_user_id")
        if isinstance(user, str) and user not in PLACEHOLDERS and event["event"] != "$create_alias":
            person = standin.people.person(event["distinct_id"])
            assert person is not None
            found[user][person.distinct_ids] = person
    return found


def assert_persons_and_groups_match(standin: PostHogStandIn, export: Export) -> None:
    truth = truth_of(export)
    people = standin.people
    persons = persons_of_users(standin)
    assert persons.keys() == truth.user_properties.keys()
    for user, expected in truth.user_properties.items():
        (person,) = persons[user].values()  # all of a user's events on one person
        for key, value in expected.items():
            assert person.properties.get(key) == value, (user, key, person.properties.get(key))
        assert not truth.removed[user] & person.properties.keys(), user  # removed in Amplitude
        assert person.properties["$initial_utm_source"] == truth.initial_source[user]
        assert person.properties["$geoip_city_name"] == truth.newest_city[user]
        assert person.properties["$os_version"] is not None
        assert person.properties["$device_type"] == "Mobile"
    # No two users merged: no person holds the events of two users.
    holders = [next(iter(found)) for found in persons.values()]
    assert len(set(holders)) == len(holders), "two users on one person"
    for device, user in truth.device_owner.items():  # every device on its user's person
        (person,) = persons[user].values()
        assert device in person.distinct_ids, (device, user)
    for device, expected in truth.device_properties.items():  # devices tied to nobody
        person = people.person(device)
        assert person is not None and person.properties.items() >= expected.items(), device
    for person in people.persons():
        assert not set(PLACEHOLDERS) & person.distinct_ids, person.distinct_ids
        # Person operations inside event_properties were not applied.
        assert "from_properties" not in person.properties
    # The placeholder ids stayed on their own devices' persons: no person named "undefined".
    assert not [p for p in PLACEHOLDERS if people.person(p) is not None]
    assert people.groups() == truth.groups
    assert not [w for w in people.warnings if w[0] != "cannot_merge_already_identified"]


def updates_in(standin: PostHogStandIn) -> list[dict[str, Any]]:
    """The person and group updates the target sent (not events of the export)."""
    return [
        e
        for e in standin.events
        if ("$set" in e["properties"] or "$set_once" in e["properties"])
        or (e["event"] == "$groupidentify" and e["properties"]["$group_set"])
    ]


def amplitude_event(
    n: int, user: Any, device: Any, day: int, **user_properties: Any
) -> dict[str, Any]:
    """Event number `n` (its uuid) of `user` on `device`, `day` days after BEGIN."""
    return as_tap_record(
        {
            "uuid": str(uuid.UUID(int=n + 1, version=4)),
            "event_type": "Viewed",
            "event_time": _time(BEGIN + timedelta(days=day)),
            "user_id": user,
            "device_id": device,
            "user_properties": user_properties,
        }
    )


def run_ok(tmp_path: Path, posthog: PostHogStandIn, records: list[dict[str, Any]]) -> str:
    """One target run over `records` (a STATE after every 2); its stderr."""
    run = run_target(target_config(tmp_path, posthog), messages_with_states(records, 2), tmp_path,
                     posthog)  # fmt: skip
    assert run.returncode == 0, run.stderr
    return run.stderr
