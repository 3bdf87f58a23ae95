"""The person and group properties store (profiles.py, winners.py) on its own: newest by event
time in any order, what is sent and remembered, paging, keep."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from target_posthog.profiles import Profiles
from target_posthog.winners import Winners

from tests.target_support import (
    posthog as posthog,  # the fixture
)


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
