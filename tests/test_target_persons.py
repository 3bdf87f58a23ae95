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
from target_posthog.profiles import Profiles, Winners

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
    """Raw Amplitude records over 10 days; returned in upload (export) order."""
    rng = random.Random(seed)
    devices = {u: [f"dev-{u}-{k}" for k in range(rng.choice((1, 1, 2, 3)))] for u in range(users)}
    devices[1].append("dev-0-0")  # user 1 also logs in on user 0's first device (a family tablet)
    companies = {u: COMPANIES[u % 3] for u in range(users) if u % 4 != 3}
    raw: list[tuple[datetime, dict[str, Any]]] = []
    for n in range(events):
        moment = BEGIN + timedelta(seconds=rng.randrange(10 * 86_400), microseconds=n)
        u = rng.randrange(users)
        device = rng.choice(devices[u])
        anonymous = rng.random() < 0.12
        # Some SDKs send a placeholder instead of no user id.
        user_id: str | None = None if anonymous else f"user-{u}"
        if anonymous and rng.random() < 0.5:
            user_id = rng.choice(PLACEHOLDERS)
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
        company = companies.get(u)
        if company and not anonymous:
            record_["groups"] = {"company": [company]}
            record_["group_properties"] = {
                "company": {company: {"name": company.title(), "seats": step}}
            }
        # Most upload within a minute; some were offline for 3 to 5 days.
        lag = timedelta(days=rng.uniform(3, 5)) if rng.random() < 0.15 else timedelta(seconds=30)
        raw.append((moment + lag, record_))
    raw.sort(key=lambda item: item[0])
    return Export([as_tap_record(r) for _, r in raw])


@dataclass
class Truth:
    user_properties: dict[str, dict[str, Any]]  # user_id -> property -> newest value
    initial_source: dict[str, str]  # user_id -> earliest initial_utm_source
    newest_city: dict[str, str]
    device_owner: dict[str, str]  # device -> the user it is aliased to (first seen)
    groups: dict[tuple[str, str], dict[str, Any]]


def truth_of(export: Export) -> Truth:
    """What Amplitude shows, from the export alone (newest by event time, ties by uuid)."""
    newest: dict[str, dict[str, tuple[str, Any]]] = defaultdict(dict)
    earliest: dict[str, tuple[str, str]] = {}
    city: dict[str, tuple[str, str]] = {}
    owner: dict[str, str] = {}
    groups: dict[tuple[str, str], dict[str, tuple[str, Any]]] = defaultdict(dict)
    for r in export.records:  # upload order: the first user seen on a device gets the alias
        order = r["event_time"] + r["uuid"]
        user = r["user_id"]
        if user is None or user in PLACEHOLDERS:
            continue
        owner.setdefault(r["device_id"], user)
        for key, value in r["user_properties"].items():
            if key.startswith("initial_"):  # first-touch values: the earliest event's
                if key not in newest[user] or order < newest[user][key][0]:
                    newest[user][key] = (order, value)
            elif key not in newest[user] or order > newest[user][key][0]:
                newest[user][key] = (order, value)
        source = r["user_properties"]["initial_utm_source"]
        if user not in earliest or order < earliest[user][0]:
            earliest[user] = (order, source)
        if user not in city or order > city[user][0]:
            city[user] = (order, r["city"])
        for kind, by_key in (r.get("group_properties") or {}).items():
            for key, values in by_key.items():
                for name, value in values.items():
                    held = groups[(kind, key)].get(name)
                    if held is None or order > held[0]:
                        groups[(kind, key)][name] = (order, value)
    return Truth(
        {u: {k: v for k, (_, v) in props.items()} for u, props in newest.items()},
        {u: v for u, (_, v) in earliest.items()},
        {u: v for u, (_, v) in city.items()},
        owner,
        {g: {k: v for k, (_, v) in props.items()} for g, props in groups.items()},
    )


def assert_persons_and_groups_match(standin: PostHogStandIn, export: Export) -> None:
    truth = truth_of(export)
    people = standin.people
    for user, expected in truth.user_properties.items():
        person = people.person(user)
        assert person is not None, user
        for key, value in expected.items():
            assert person.properties.get(key) == value, (user, key, person.properties.get(key))
        assert person.properties["$initial_utm_source"] == truth.initial_source[user]
        assert person.properties["$geoip_city_name"] == truth.newest_city[user]
        assert person.properties["$os_version"] is not None
        assert person.properties["$device_type"] == "Mobile"
    for device, user in truth.device_owner.items():
        person = people.person(device)
        assert person is not None and user in person.distinct_ids, (device, user)
    for person in people.persons():
        users = {d for d in person.distinct_ids if d.startswith("user-")}
        assert len(users) <= 1, f"two users merged: {sorted(users)}"
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
    for shuffle in (observations, observations[::-1], observations + observations):
        profiles = Profiles(tmp_path / f"{len(results)}.sqlite")
        for stamp, values in shuffle:
            _observe(profiles, "u", stamp, values)
            profiles.sync()  # as if a STATE came between any two records
        (update,) = _sent(profiles)
        results.append(update["properties"]["$set"])
        assert update["timestamp"] == "2024-04-03T00:00:00.000000+00:00"
        profiles.close()
    assert results == [{"x": 3, "y": 3, "z": 1, "$initial_x": 1}] * 3


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
