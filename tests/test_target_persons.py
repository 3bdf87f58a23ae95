"""Persons and groups end up in PostHog as Amplitude shows them: final state in the stand-in.

The export below has what breaks naive migrations: late uploads (old events uploaded days
after newer ones, so upload order is not event order), a device shared by two users,
placeholder user ids ("undefined", "null", ...) on different devices, and group properties
on ordinary events that change over time. Truth is computed from the export alone; the
stand-in builds persons and groups by PostHog's rules (tests/testbed/persons.py).
"""

from __future__ import annotations

import itertools
import random
import signal
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from target_posthog.profiles import Profiles
from target_posthog.winners import Winners

from tests.target_support import (
    SCHEMA,
    as_tap_record,
    messages_with_states,
    record,
    run_target,
    start_target,
    state,
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


def _updates(standin: PostHogStandIn) -> list[dict[str, Any]]:
    """The person and group updates the target sent (not events of the export)."""
    return [
        e
        for e in standin.events
        if ("$set" in e["properties"] or "$set_once" in e["properties"])
        or (e["event"] == "$groupidentify" and e["properties"]["$group_set"])
    ]


def test_export_has_what_breaks_naive_migrations() -> None:
    """The scenario is what it claims: late uploads, a shared device, placeholders, groups."""
    records = build_export().records
    times = [r["event_time"] for r in records]
    late = sum(1 for a, b in itertools.pairwise(times) if b < a)
    assert late > 50
    users_of_device = defaultdict(set)
    for r in records:
        if r["user_id"] and r["user_id"] not in PLACEHOLDERS:
            users_of_device[r["device_id"]].add(r["user_id"])
    assert users_of_device["dev-0-0"] == {"user-0", "user-1"}
    assert {r["user_id"] for r in records} >= {"undefined", "null"}
    assert sum(1 for r in records if r.get("group_properties")) > 100


def test_whole_migration_ends_with_amplitudes_persons_and_groups(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    export = build_export()
    config = target_config(tmp_path, posthog, concurrency=4, batch_size=20)
    first = run_target(config, messages_with_states(export.records, 40), tmp_path, posthog)
    assert first.returncode == 0, first.stderr
    assert_persons_and_groups_match(posthog, export)
    sent = len(_updates(posthog))
    assert sent > 0
    # A rerun over the same range sends the events again (same uuids) but no update.
    again = run_target(config, messages_with_states(export.records, 40), tmp_path, posthog)
    assert again.returncode == 0, again.stderr
    assert len(_updates(posthog)) == sent
    assert_persons_and_groups_match(posthog, export)


def test_two_incremental_runs_over_the_range_end_right(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    export = build_export(seed=9)
    half = len(export.records) // 2
    config = target_config(tmp_path, posthog, concurrency=4, batch_size=20)
    for part in (export.records[:half], export.records[half:]):
        run = run_target(config, messages_with_states(part, 30), tmp_path, posthog)
        assert run.returncode == 0, run.stderr
    assert_persons_and_groups_match(posthog, export)


def test_killed_and_resumed_run_ends_right(tmp_path: Path) -> None:
    export = build_export(seed=13)
    records = export.records
    every = 25
    with PostHogStandIn(api_key=target_config(tmp_path)["api_key"], latency=0.02) as slow:
        config = target_config(tmp_path, slow, concurrency=2, batch_size=10)
        process = start_target(config, tmp_path)
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(b"".join(orjson.dumps(m) + b"\n" for m in messages_with_states(
            records, every)))  # fmt: skip
        process.stdin.flush()
        states = [orjson.loads(process.stdout.readline()) for _ in range(5)]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        done = states[-1]["done"]
        assert 0 < done < len(records)
        rest = [SCHEMA]
        for n, value in enumerate(records[done:], start=done + 1):
            rest.append(record(value))
            if n % every == 0 or n == len(records):
                rest.append(state({"done": n}))
        resumed = run_target(config, rest, tmp_path, slow)
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.states[-1] == {"done": len(records)}
        assert_persons_and_groups_match(slow, export)


def test_keep_existing_properties_only_fills_what_is_missing(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """A project with live data: history never overwrites a property already there."""
    export = build_export(seed=21)
    people = posthog.people
    people.add_person(["user-2"], {"plan": "live-plan", "email": "two@example.com"})
    people.add_person(["user-5", "dev-5-0"], {"nickname": "live-nick"})
    people.add_group("company", "globex", {"name": "Globex (live)"})
    config = target_config(tmp_path, posthog, existing_properties="keep")
    run = run_target(config, messages_with_states(export.records, 50), tmp_path, posthog)
    assert run.returncode == 0, run.stderr
    truth = truth_of(export)
    two = people.person("user-2")
    assert two is not None
    assert two.properties["plan"] == "live-plan"  # kept
    assert two.properties["email"] == "two@example.com"
    assert two.properties["step"] == truth.user_properties["user-2"]["step"]  # filled
    five = people.person("user-5")
    assert five is not None and five.properties["nickname"] == "live-nick"
    # Group properties are never sent in this mode (PostHog has no set-once for groups).
    assert people.groups()[("company", "globex")] == {"name": "Globex (live)"}
    assert "keep: " in run.stderr and "group updates not sent" in run.stderr
    # A user PostHog did not know yet gets every value.
    fresh = next(u for u in truth.user_properties if u not in ("user-2", "user-5"))
    person: PersonView | None = people.person(fresh)
    assert person is not None
    assert person.properties["plan"] == truth.user_properties[fresh]["plan"]


def test_keep_fills_gaps_in_later_runs_and_says_what_it_cannot_update(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """keep never replaces a value PostHog holds; a later run still fills a property that
    appears only then, and says how many persons' values it filled earlier changed since
    (PostHog keeps those: keep cannot tell them from live values without reading PostHog)."""
    posthog.people.add_person(["bob"], {"plan": "live"})
    config = target_config(tmp_path, posthog, existing_properties="keep")

    def run(records: list[dict[str, Any]]) -> str:
        done = run_target(config, messages_with_states(records, 2), tmp_path, posthog)
        assert done.returncode == 0, done.stderr
        return done.stderr

    run([_event(0, "ann", "a", 1, plan="A"), _event(1, "bob", "b", 1, plan="old")])
    stderr = run([_event(2, "ann", "a", 2, plan="B", seats=3), _event(3, "bob", "b", 2, plan="x")])
    ann, bob = posthog.people.person("ann"), posthog.people.person("bob")
    assert ann is not None and bob is not None
    assert ann.properties["plan"] == "A" and ann.properties["seats"] == 3  # filled later
    assert bob.properties["plan"] == "live"
    assert (
        "existing_properties is keep: 2 persons have history that changed since their "
        "properties were first filled" in stderr
    )


def test_keep_with_the_query_api_spares_live_values_and_updates_its_own(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """With a personal API key, keep reads once which properties each person and group held
    before the migration: those are never changed; the migration's own are newest-wins across
    runs (set, and removed when Amplitude no longer shows them: null for a group)."""
    posthog.people.add_person(["bob"], {"plan": "live", "email": "bob@example.com"})
    config = target_config(
        tmp_path, posthog, existing_properties="keep", app_host=posthog.url,
        personal_api_key=posthog.query_api.personal_api_key,
        project_id=str(posthog.query_api.project_id),
    )  # fmt: skip

    def run(records: list[dict[str, Any]]) -> str:
        done = run_target(config, messages_with_states(records, 2), tmp_path, posthog)
        assert done.returncode == 0, done.stderr
        return done.stderr

    posthog.people.add_group("company", "globex", {"name": "Globex (live)"})

    def grouped(record: dict[str, Any], key: str, **values: Any) -> dict[str, Any]:
        return {**record, "groups": {"company": [key]},
                "group_properties": {"company": {key: values}}}  # fmt: skip

    run([
        grouped(_event(0, "ann", "a", 1, plan="A", seats=3), "globex", name="Globex", seats=5),
        grouped(_event(1, "bob", "b", 1, plan="old", nick="n1"), "acme", name="Acme", tier=1),
    ])  # fmt: skip
    stderr = run([
        grouped(_event(2, "ann", "a", 2, plan="B"), "globex", name="Globex", seats=7),
        grouped(_event(3, "bob", "b", 2, nick="n2"), "acme", name="Acme Corp"),
    ])  # fmt: skip
    assert posthog.people.groups() == {
        ("company", "globex"): {"name": "Globex (live)", "seats": 7},  # live name kept
        ("company", "acme"): {"name": "Acme Corp", "tier": None},  # all its own: newest
    }
    ann, bob = posthog.people.person("ann"), posthog.people.person("bob")
    assert ann is not None and bob is not None
    assert ann.properties["plan"] == "B" and "seats" not in ann.properties  # its own: newest
    assert bob.properties["plan"] == "live" and bob.properties["email"] == "bob@example.com"
    assert bob.properties["nick"] == "n2"
    assert "existing_properties is keep" not in stderr  # nothing it could not do
    # Each person and group read once, in run 1: one query for persons, one for groups.
    assert len(posthog.query_api.requests) == 2


def test_keep_updates_wait_for_a_run_that_can_read_posthog(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """A refused lookup (a wrong personal API key) sends no person update that could replace
    a live value: one line, and the next run with the right key sends it."""
    posthog.people.add_person(["bob"], {"plan": "live"})
    settings = {"existing_properties": "keep", "app_host": posthog.url,
                "project_id": str(posthog.query_api.project_id)}  # fmt: skip
    records = [_event(0, "bob", "b", 1, plan="old", nick="n1")]
    wrong = target_config(tmp_path, posthog, personal_api_key="phx_wrong", **settings)
    refused = run_target(wrong, messages_with_states(records, 2), tmp_path, posthog)
    assert refused.returncode == 0, refused.stderr
    assert "cannot read what PostHog's persons and groups hold (PostHog refused the personal " \
        "API key (401)" in refused.stderr  # fmt: skip
    assert "phx_wrong" not in refused.stderr
    bob = posthog.people.person("bob")
    assert bob is not None and bob.properties == {"plan": "live"}
    right = target_config(
        tmp_path, posthog, personal_api_key=posthog.query_api.personal_api_key, **settings
    )
    again = run_target(right, messages_with_states(records, 2), tmp_path, posthog)
    assert again.returncode == 0, again.stderr
    bob = posthog.people.person("bob")
    assert bob is not None and bob.properties == {"plan": "live", "nick": "n1"}


def test_overwrite_replaces_live_values_with_the_newest_history(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """The default, for a project that has no live data or where Amplitude is the truth."""
    export = build_export(seed=21)
    posthog.people.add_person(["user-2"], {"plan": "live-plan", "email": "two@example.com"})
    run = run_target(
        target_config(tmp_path, posthog), messages_with_states(export.records, 50), tmp_path,
        posthog,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    two = posthog.people.person("user-2")
    assert two is not None
    assert two.properties["plan"] == truth_of(export).user_properties["user-2"]["plan"]
    assert two.properties["email"] == "two@example.com"  # history has no email: untouched


# --- identity collisions and anonymous properties, one case at a time ----------------------


def _event(n: int, user: Any, device: Any, day: int, **user_properties: Any) -> dict[str, Any]:
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


def _run(tmp_path: Path, posthog: PostHogStandIn, records: list[dict[str, Any]]) -> str:
    run = run_target(target_config(tmp_path, posthog), messages_with_states(records, 2), tmp_path,
                     posthog)  # fmt: skip
    assert run.returncode == 0, run.stderr
    return run.stderr


def test_anonymous_properties_before_and_after_login_are_the_users(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """A device used anonymously, then logged in, then anonymously again (in upload order,
    with a late upload): the user ends with the newest values of all of them, as Amplitude
    shows (it merges a device's anonymous history into the user who logs in on it)."""
    records = [
        _event(0, None, "tablet", 1, plan="free", theme="dark", initial_referrer="ads"),
        _event(1, "ann", "tablet", 2, plan="trial"),
        _event(2, None, "tablet", 5, plan="pro"),  # newest plan: anonymous, after login
        _event(3, "ann", "phone", 3, plan="trial", initial_referrer="mail"),
        _event(4, None, "tablet", 0, theme="light", initial_referrer="EMPTY"),  # late upload
    ]
    _run(tmp_path, posthog, records)
    ann = posthog.people.person("ann")
    assert ann is not None
    assert ann.distinct_ids == {"ann", "tablet", "phone"}
    assert ann.properties["plan"] == "pro"
    # user_properties is the user's whole snapshot: the newest (day 5) has no theme any more
    # (days 1 and 0, the late upload, had one), so Amplitude shows none and PostHog neither.
    assert "theme" not in ann.properties
    assert ann.properties["initial_referrer"] == "EMPTY"  # the earliest, as Amplitude shows
    assert ann.properties["$initial_referrer"] == "ads"  # EMPTY means none to PostHog
    # A second run with a newer anonymous event on the tablet: the user's again.
    _run(tmp_path, posthog, [_event(5, None, "tablet", 6, plan="team")])
    ann = posthog.people.person("ann")
    assert ann is not None and ann.properties["plan"] == "team"


def test_properties_amplitude_no_longer_shows_are_removed(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """user_properties is the user's whole snapshot: the person ends as the newest one (by
    event time), in a later run and whatever the upload order; a live property history never
    had stays."""
    posthog.people.add_person(["ann"], {"email": "ann@example.com"})
    _run(tmp_path, posthog, [_event(0, "ann", "d", 1, plan="pro", coupon="X", beta=True)])
    ann = posthog.people.person("ann")
    assert ann is not None and ann.properties["coupon"] == "X"
    late = _event(2, "ann", "d", 0, plan="free", legacy=1)  # older, uploaded late
    _run(tmp_path, posthog, [_event(1, "ann", "d", 2, plan="pro", beta=False), late])
    ann = posthog.people.person("ann")
    assert ann is not None
    assert {k: v for k, v in ann.properties.items() if not k.startswith("$")} == {
        "plan": "pro",
        "beta": False,
        "email": "ann@example.com",
    }


def test_a_value_changing_back_reaches_posthog(tmp_path: Path, posthog: PostHogStandIn) -> None:
    """A, then B, then A again (three runs): each update is a new event (a reused uuid would
    be dropped by PostHog's deduplication, leaving B); a rerun sends nothing."""
    for n, plan in enumerate(("A", "B", "A")):
        _run(tmp_path, posthog, [_event(n, "ann", "d", n + 1, plan=plan)])
    _run(tmp_path, posthog, [_event(2, "ann", "d", 3, plan="A")])
    ann = posthog.people.person("ann")
    assert ann is not None and ann.properties["plan"] == "A"
    updates = [e for e in _updates(posthog) if e["distinct_id"] == "ann"]
    assert [e["properties"]["$set"]["plan"] for e in updates] == ["A", "B", "A"]
    assert len({e["uuid"] for e in updates}) == 3


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ({"device_type": "Apple iPhone", "device_family": "Apple iPhone",
          "os_name": "Mobile Safari"}, ("iOS", "Mobile")),
        ({"device_type": "Apple iPad", "device_family": "Apple iPad", "os_name": "Safari"},
         ("iOS", "Tablet")),
        ({"device_type": "Samsung Galaxy S21", "os_name": "Chrome Mobile"}, ("Android", "Mobile")),
        ({"device_type": "Android", "os_name": "Chrome Mobile"}, ("Android", "Mobile")),
        ({"device_type": "Samsung Galaxy Tab S7", "os_name": "Chrome"}, ("Android", "Tablet")),
        ({"device_type": "Mac", "os_name": "Chrome"}, ("Mac OS X", "Desktop")),
    ],
)  # fmt: skip
def test_mobile_web_persons_get_posthogs_os_and_device_type(
    tmp_path: Path, posthog: PostHogStandIn, device: dict[str, str], expected: tuple[str, str]
) -> None:
    """Amplitude's browser SDK names phones and tablets in device_type ("Apple iPhone"):
    PostHog's $os and $device_type (Mobile, Tablet, Desktop) as posthog-js would report."""
    record = {**_event(0, "ann", "d", 1, plan="pro"), "platform": "Web", **device}
    _run(tmp_path, posthog, [record])
    ann = posthog.people.person("ann")
    assert ann is not None
    assert (ann.properties["$os"], ann.properties["$device_type"]) == expected


def test_posthog_instructions_inside_event_properties_are_kept_but_not_obeyed(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """`$process_person_profile`, `$groups` and `$cookieless_mode` in an export's
    event_properties would change what PostHog does with the event (no person, a group the
    record never named, a cookieless distinct_id): kept as `$amplitude_<key>`, not obeyed."""
    record = _event(0, "ann", "d", 1, plan="pro")
    record["event_properties"] = {
        "$process_person_profile": False,
        "$groups": {"company": "someone-else"},
        "$cookieless_mode": True,
        "item": "x",
    }
    _run(tmp_path, posthog, [record])
    ann = posthog.people.person("ann")
    assert ann is not None and ann.properties["plan"] == "pro"
    (event,) = [e for e in posthog.events if e["event"] == "Viewed"]
    properties = event["properties"]
    assert not {"$process_person_profile", "$groups", "$cookieless_mode"} & properties.keys()
    assert properties["$amplitude_$process_person_profile"] is False
    assert properties["$amplitude_$groups"] == {"company": "someone-else"}
    assert properties["$amplitude_$cookieless_mode"] is True
    assert properties["item"] == "x"


def test_group_identify_rows_without_ids_create_no_person(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """Amplitude's server-side group identify rows name no user or device. PostHog makes a
    person of every $groupidentify's distinct_id: the rows go personless, and their
    properties reach the group under a person that showed it, else under one shared id."""

    def row(n: int, day: int, key: str, values: dict[str, Any]) -> dict[str, Any]:
        return {
            **_event(n, None, None, day),
            "event_type": "$groupidentify",
            "group_properties": {"company": {key: values}},
        }

    ann = {
        **_event(0, "ann", "d", 1, plan="pro"),
        "groups": {"company": ["acme"]},
        "group_properties": {"company": {"acme": {"name": "Acme"}}},
    }
    records = [
        ann,
        row(1, 2, "acme", {"name": "Acme Corp", "seats": 5}),
        row(2, 3, "solo", {"name": "Solo"}),
        row(3, 4, "duo", {"name": "Duo"}),
    ]
    _run(tmp_path, posthog, records)
    people = posthog.people
    assert {p.distinct_ids for p in people.persons()} == {
        frozenset({"ann", "d"}),
        frozenset({"amplitude_group_updates"}),  # one for all groups nobody showed
    }
    assert people.groups() == {
        ("company", "acme"): {"name": "Acme Corp", "seats": 5},
        ("company", "solo"): {"name": "Solo"},
        ("company", "duo"): {"name": "Duo"},
    }
    updates = {e["properties"]["$group_key"]: e["distinct_id"] for e in _updates(posthog)
               if e["event"] == "$groupidentify"}  # fmt: skip
    assert updates["acme"] == "ann"
    rows = [e for e in posthog.events if e["event"] == "$amplitude_$groupidentify"]
    assert len(rows) == 3  # every row is in PostHog
    assert not people.warnings


def test_a_property_too_large_for_posthog_is_set_aside_and_the_rest_arrives(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """PostHog refuses a whole person update beyond about 640 KB of properties: the largest
    property is set aside (dead-letter file, counted, one line), the rest reaches the person,
    and an older value of it does not stay."""
    _run(tmp_path, posthog, [_event(0, "ann", "d", 1, plan="free", notes="short")])
    notes = "n" * 700_000
    stderr = _run(tmp_path, posthog, [_event(1, "ann", "d", 2, plan="pro", notes=notes)])
    ann = posthog.people.person("ann")
    assert ann is not None
    assert ann.properties["plan"] == "pro" and "notes" not in ann.properties
    assert not posthog.people.warnings
    (letter,) = [
        orjson.loads(line) for line in (tmp_path / "dead-letter.jsonl").read_bytes().splitlines()
    ]
    assert letter["record"] == {"distinct_id": "ann", "property": "notes", "value": notes}
    assert letter["reason"].startswith("person property 'notes' of 'ann' is 700002 bytes")
    assert stderr.count("dead-lettered person_properties record") == 1
    assert "1 dead-lettered" in stderr


def test_a_dry_run_shows_the_same_person_updates(tmp_path: Path, posthog: PostHogStandIn) -> None:
    """The dry run's payloads hold the person update the real run sends: anonymous values of
    the user's device included, though a dry run records no alias."""
    records = [
        _event(0, None, "tablet", 1, plan="free"),
        _event(1, "ann", "tablet", 2, plan="trial"),
        _event(2, None, "tablet", 5, plan="pro"),
    ]
    payloads = tmp_path / "payloads.jsonl"
    config = target_config(tmp_path, posthog, dry_run_path=str(payloads))
    run = run_target(config, messages_with_states(records, 2), tmp_path, posthog)
    assert run.returncode == 0, run.stderr
    events = [e for line in payloads.read_bytes().splitlines() for e in orjson.loads(line)["batch"]]
    updates = {e["distinct_id"]: e for e in events if e["properties"].get("$set")}
    assert updates.keys() == {"ann"}, run.stderr
    assert updates["ann"]["properties"]["$set"]["plan"] == "pro"
    assert posthog.event_count == 0  # nothing sent


def test_a_dry_run_after_a_real_run_shows_exactly_what_the_next_run_sends(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """After a real run, a dry run over the same range plus new records shows only the
    updates the next real run sends (the same events, uuids included), not every person."""
    first = [
        _event(0, "ann", "tablet", 1, plan="pro"),
        _event(1, "bob", "phone", 1, plan="free"),
        _event(2, None, "tablet", 2, plan="pro", seen=True),
    ]
    _run(tmp_path, posthog, first)
    later = [
        *first,
        _event(3, "bob", "phone", 3, plan="team"),  # bob changed; ann did not
        _event(4, "cid", "c-1", 3, plan="free"),  # a new user
    ]
    payloads = tmp_path / "payloads.jsonl"
    config = target_config(tmp_path, posthog, dry_run_path=str(payloads))
    dry = run_target(config, messages_with_states(later, 2), tmp_path, posthog)
    assert dry.returncode == 0, dry.stderr
    shown = [
        e
        for line in payloads.read_bytes().splitlines()
        for e in orjson.loads(line)["batch"]
        if e["properties"].get("amplitude_migration_update")
    ]
    assert sorted(e["distinct_id"] for e in shown) == ["bob", "cid"]
    before = len(_updates(posthog))
    _run(tmp_path, posthog, later)
    sent = _updates(posthog)[before:]
    assert sorted(shown, key=lambda e: e["distinct_id"]) == sorted(
        sent, key=lambda e: e["distinct_id"]
    )


@pytest.mark.parametrize("device_first", [True, False])
def test_a_user_id_equal_to_another_users_device_id_never_merges_them(
    tmp_path: Path, posthog: PostHogStandIn, device_first: bool
) -> None:
    """User "ann" logs in on device "abc"; another user's user_id is "abc". Whichever comes
    first keeps the id; the two users stay two persons, each with their own properties."""
    # (an anonymous event of a tied device carries its user's whole snapshot, as Amplitude's)
    ann = [_event(0, "ann", "abc", 1, who="ann"), _event(1, None, "abc", 2, who="ann", seen="anon")]
    abc = [
        _event(2, "abc", "abc-phone", 3, who="abc"),
        _event(3, "abc", None, 4, who="abc", age=40),
    ]
    stderr = _run(tmp_path, posthog, ann + abc if device_first else abc + ann)
    people = posthog.people
    persons = persons_of_users(posthog)
    (ann_person,) = persons["ann"].values()
    (abc_person,) = persons["abc"].values()
    assert ann_person != abc_person
    assert ann_person.properties["who"] == "ann"
    assert abc_person.properties["who"] == "abc" and abc_person.properties["age"] == 40
    assert "abc-phone" in abc_person.distinct_ids
    if device_first:  # device "abc" is ann's; user abc's events are sent as amplitude_user:abc
        assert "abc" in ann_person.distinct_ids and ann_person.properties["seen"] == "anon"
        assert abc_person.distinct_ids == {"amplitude_user:abc", "abc-phone"}
    else:  # id "abc" is user abc's: device "abc" is not aliased to ann, and its anonymous
        # events have a distinct_id of their own
        assert ann_person.distinct_ids == {"ann"}
        assert "abc" in abc_person.distinct_ids and "seen" not in abc_person.properties
        device = people.person("amplitude_device:abc")
        assert device is not None and device.properties["seen"] == "anon"
    assert f"{1 if device_first else 2} colliding user/device ids (kept apart)" in stderr
    assert "id 'abc' is both a user's user_id and another user's device_id" in stderr
    assert not people.warnings


def test_a_device_id_equal_to_an_earlier_users_id_never_lands_on_that_user(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """User "abc" is seen first; then device "abc" is used anonymously (and by user ann): the
    device's anonymous events and properties must not become user abc's (a PostHog person
    cannot be split afterwards). They go to "amplitude_device:abc", in later runs too."""
    records = [
        _event(0, "abc", "abc-phone", 1, who="abc", plan="abc-plan"),
        _event(1, None, "abc", 2, plan="device-plan", seen="anon"),
        _event(2, "ann", "abc", 3, who="ann"),
    ]
    stderr = _run(tmp_path, posthog, records)
    _run(tmp_path, posthog, [_event(3, None, "abc", 4, plan="later-device-plan", seen="anon")])
    people = posthog.people
    abc = people.person("abc")
    assert abc is not None
    assert abc.distinct_ids == {"abc", "abc-phone"}
    assert abc.properties["plan"] == "abc-plan" and "seen" not in abc.properties
    device = people.person("amplitude_device:abc")
    assert device is not None and device.distinct_ids == {"amplitude_device:abc"}
    assert device.properties["plan"] == "later-device-plan"
    assert device.properties["seen"] == "anon"
    ann = people.person("ann")
    assert ann is not None and ann.distinct_ids == {"ann"}
    assert (
        "id 'abc' is both a user's user_id and a device's id (its anonymous events are sent "
        "as 'amplitude_device:abc')" in stderr
    )
    assert not people.warnings


def test_a_user_id_equal_to_a_device_used_anonymously_before_is_kept_apart(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """Device "abc" is used anonymously first (its events went to PostHog as "abc"); then a
    user "abc" appears in the same run: the user's events go to amplitude_user:abc, in later
    runs too, and the device's anonymous person stays its own."""
    records = [
        _event(0, None, "abc", 1, seen="anon"),
        _event(1, "abc", "abc-phone", 2, who="abc"),
    ]
    stderr = _run(tmp_path, posthog, records)
    _run(tmp_path, posthog, [_event(2, "abc", "abc-phone", 3, who="abc", age=40)])
    people = posthog.people
    device = people.person("abc")
    assert device is not None and device.distinct_ids == {"abc"}
    assert device.properties["seen"] == "anon" and "who" not in device.properties
    user = people.person("amplitude_user:abc")
    assert user is not None and user.distinct_ids == {"amplitude_user:abc", "abc-phone"}
    assert user.properties["age"] == 40
    assert (
        "id 'abc' is both a user's user_id and a device's id used anonymously before (the "
        "user's events are sent as 'amplitude_user:abc')" in stderr
    )
    assert not people.warnings


def test_a_device_first_anonymous_then_used_by_two_users_stays_with_the_first(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    records = [
        _event(0, None, "kiosk", 1, plan="anon"),
        _event(1, "ann", "kiosk", 2, plan="ann"),
        _event(2, "bob", "kiosk", 3, plan="bob"),
        _event(3, None, "kiosk", 4, plan="ann", seen=True),
    ]
    stderr = _run(tmp_path, posthog, records)
    persons = persons_of_users(posthog)
    (ann,) = persons["ann"].values()
    (bob,) = persons["bob"].values()
    assert ann.distinct_ids == {"ann", "kiosk"} and bob.distinct_ids == {"bob"}
    assert ann.properties["plan"] == "ann" and ann.properties["seen"] is True
    assert bob.properties["plan"] == "bob" and "seen" not in bob.properties
    assert "1 shared-device conflicts" in stderr


def test_numeric_and_string_ids_of_one_user_are_one_person(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """Another tap may send ids as numbers: 4242, 4242.0 and "4242" are one user."""
    records = [
        {**_event(0, None, "d-1", 1), "user_id": 4242},
        {**_event(1, None, "d-2", 2), "user_id": 4242.0},
        _event(2, "4242", "d-3", 3),
        {**_event(3, None, "4242", 4), "user_id": 4242},  # device id equal to its own user's
    ]
    _run(tmp_path, posthog, records)
    person = posthog.people.person("4242")
    assert person is not None and person.distinct_ids == {"4242", "d-1", "d-2", "d-3"}
    assert len(posthog.people.persons()) == 1


# --- the profiles store on its own -------------------------------------------------------


def _observe(profiles: Profiles, person: str, stamp: str, values: dict[str, Any]) -> None:
    order = f"2024-04-0{stamp}T00:00:00.000000+00:00" + "0" * 36
    profiles.observe_person(person, order, values, {"$initial_x": values.get("x")})


def _sent(profiles: Profiles) -> list[dict[str, Any]]:
    updates = list(profiles.updates(lambda _device: None))
    profiles.record_sent([pending for _, pending in updates])
    return [event for event, _ in updates]


def test_profiles_merge_newest_by_event_time_in_any_order(tmp_path: Path) -> None:
    observations = [("3", {"x": 3, "y": 3}), ("1", {"x": 1, "z": 1}), ("2", {"x": 2, "y": 2})]
    results = []
    uuids = set()
    for shuffle in (observations, observations[::-1], observations + observations):
        profiles = Profiles(tmp_path / f"{len(results)}.sqlite")
        for stamp, values in shuffle:
            _observe(profiles, "u", stamp, values)
            profiles.sync()  # as if a STATE came between any two records
        (update,) = _sent(profiles)
        results.append(update["properties"]["$set"])
        uuids.add(update["uuid"])
        assert update["timestamp"] == "2024-04-03T00:00:00.000000+00:00"
        profiles.close()
    assert results == [{"x": 3, "y": 3, "z": 1, "$initial_x": 1}] * 3
    assert len(uuids) == 1  # the same update whatever the order (a dry run twice agrees)


def test_profiles_send_only_what_changed_and_remember_it(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    profiles = Profiles(path)
    _observe(profiles, "u", "2", {"x": 2})
    _observe(profiles, "v", "2", {"x": 2})
    first = _sent(profiles)
    assert [e["distinct_id"] for e in first] == ["u", "v"]
    profiles.close()
    again = Profiles(path)  # a later run
    _observe(again, "u", "2", {"x": 2})  # the same record again
    _observe(again, "v", "1", {"x": 1})  # older: changes nothing but $initial_x
    _observe(again, "u", "3", {"x": 2})  # newer, same value: nothing to send
    (update,) = _sent(again)
    assert update["distinct_id"] == "v"
    assert update["properties"]["$set"] == {"x": 2, "$initial_x": 1}
    assert _sent(again) == []
    # The same values give the same uuid: a re-send after a crash is the same event.
    assert first[0]["uuid"] != first[1]["uuid"]
    again.close()


def test_profiles_updates_are_read_a_page_at_a_time(tmp_path: Path) -> None:
    profiles = Profiles(tmp_path / "registry.sqlite")
    for n in range(5_000):  # more than a page
        _observe(profiles, f"user-{n:05d}", "1", {"n": n})
    assert len({e["distinct_id"] for e in _sent(profiles)}) == 5_000
    assert _sent(profiles) == []
    profiles.close()


def test_keep_sends_person_values_as_set_once_and_withholds_groups(tmp_path: Path) -> None:
    profiles = Profiles(tmp_path / "registry.sqlite", existing="keep")
    _observe(profiles, "u", "1", {"x": 1})
    order = "2024-04-01T00:00:00.000000+00:00" + "0" * 36
    profiles.observe_group("company", "acme", order, {"name": "Acme"}, "u")
    (update,) = _sent(profiles)
    assert update["properties"]["$set_once"] == {"x": 1, "$initial_x": 1}
    assert "$set" not in update["properties"]
    assert profiles.group_updates_withheld == 1
    profiles.close()


@pytest.mark.parametrize("seed", range(40))
def test_winners_equal_brute_force_whatever_the_order_and_sync_points(seed: int) -> None:
    """Newest (and earliest) per name, through observations, merges and stored round trips."""
    rng = random.Random(seed)
    observations = [
        (f"2024-04-01T00:00:{rng.randrange(60):02d}.{n:06d}+00:00",
         {name: rng.randrange(4) for name in rng.sample("abcdef", rng.randint(1, 4))})
        for n in range(rng.randint(1, 30))
    ]  # fmt: skip
    rng.shuffle(observations)
    for earliest in (False, True):
        stored = Winners(earliest)
        pending = Winners(earliest)
        for order, values in observations:
            pending.add(order, values)
            if rng.random() < 0.3:  # a STATE: merge into the stored copy, through JSON
                stored.merge(pending)
                stored = Winners.load(orjson.loads(orjson.dumps(stored.dump())), earliest)
                pending = Winners(earliest)
        stored.merge(pending)
        truth: dict[str, tuple[str, int]] = {}
        for order, values in observations:
            for name, value in values.items():
                held = truth.get(name)
                if held is None or (order < held[0] if earliest else order > held[0]):
                    truth[name] = (order, value)
        assert stored.values == {name: value for name, (_, value) in truth.items()}
        assert {n: stored.orders.get(n, stored.edge) for n in stored.values} == {
            name: order for name, (order, _) in truth.items()
        }
