"""Who a person is, one case at a time: ids that are both a user's and a device's, shared
devices, numeric ids, group rows without ids; asserted in the PostHog stand-in's final
persons and groups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from target_posthog.capture_ids import hashed_id

from tests.persons_harness import (
    amplitude_event,
    persons_of_users,
    run_ok,
    updates_in,
)
from tests.target_support import (
    posthog as posthog,  # the fixture
)
from tests.testbed.posthog import PostHogStandIn


def test_group_identify_rows_without_ids_create_no_person(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """Amplitude's server-side group identify rows name no user or device. PostHog makes a
    person of every $groupidentify's distinct_id: the rows go personless, and their
    properties reach the group under a person that showed it, else under one shared id."""

    def row(n: int, day: int, key: str, values: dict[str, Any]) -> dict[str, Any]:
        return {
            **amplitude_event(n, None, None, day),
            "event_type": "$groupidentify",
            "group_properties": {"company": {key: values}},
        }

    ann = {
        **amplitude_event(0, "ann", "d", 1, plan="pro"),
        "groups": {"company": ["acme"]},
        "group_properties": {"company": {"acme": {"name": "Acme"}}},
    }
    records = [
        ann,
        row(1, 2, "acme", {"name": "Acme Corp", "seats": 5}),
        row(2, 3, "solo", {"name": "Solo"}),
        row(3, 4, "duo", {"name": "Duo"}),
    ]
    run_ok(tmp_path, posthog, records)
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
    updates = {e["properties"]["$group_key"]: e["distinct_id"] for e in updates_in(posthog)
               if e["event"] == "$groupidentify"}  # fmt: skip
    assert updates["acme"] == "ann"
    rows = [e for e in posthog.events if e["event"] == "$amplitude_$groupidentify"]
    assert len(rows) == 3  # every row is in PostHog
    assert not people.warnings


@pytest.mark.parametrize("device_first", [True, False])
def test_a_user_id_equal_to_another_users_device_id_never_merges_them(
    tmp_path: Path, posthog: PostHogStandIn, device_first: bool
) -> None:
    """User "ann" logs in on device "abc"; another user's user_id is "abc". Whichever comes
    first keeps the id; the two users stay two persons, each with their own properties."""
    # (an anonymous event of a tied device carries its user's whole snapshot, as Amplitude's)
    ann = [
        amplitude_event(0, "ann", "abc", 1, who="ann"),
        amplitude_event(1, None, "abc", 2, who="ann", seen="anon"),
    ]
    abc = [
        amplitude_event(2, "abc", "abc-phone", 3, who="abc"),
        amplitude_event(3, "abc", None, 4, who="abc", age=40),
    ]
    stderr = run_ok(tmp_path, posthog, ann + abc if device_first else abc + ann)
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
        amplitude_event(0, "abc", "abc-phone", 1, who="abc", plan="abc-plan"),
        amplitude_event(1, None, "abc", 2, plan="device-plan", seen="anon"),
        amplitude_event(2, "ann", "abc", 3, who="ann"),
    ]
    stderr = run_ok(tmp_path, posthog, records)
    run_ok(
        tmp_path,
        posthog,
        [amplitude_event(3, None, "abc", 4, plan="later-device-plan", seen="anon")],
    )
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
        amplitude_event(0, None, "abc", 1, seen="anon"),
        amplitude_event(1, "abc", "abc-phone", 2, who="abc"),
    ]
    stderr = run_ok(tmp_path, posthog, records)
    run_ok(tmp_path, posthog, [amplitude_event(2, "abc", "abc-phone", 3, who="abc", age=40)])
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
        amplitude_event(0, None, "kiosk", 1, plan="anon"),
        amplitude_event(1, "ann", "kiosk", 2, plan="ann"),
        amplitude_event(2, "bob", "kiosk", 3, plan="bob"),
        amplitude_event(3, None, "kiosk", 4, plan="ann", seen=True),
    ]
    stderr = run_ok(tmp_path, posthog, records)
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
        {**amplitude_event(0, None, "d-1", 1), "user_id": 4242},
        {**amplitude_event(1, None, "d-2", 2), "user_id": 4242.0},
        amplitude_event(2, "4242", "d-3", 3),
        {
            **amplitude_event(3, None, "4242", 4),
            "user_id": 4242,
        },  # device id equal to its own user's
    ]
    run_ok(tmp_path, posthog, records)
    person = posthog.people.person("4242")
    assert person is not None and person.distinct_ids == {"4242", "d-1", "d-2", "d-3"}
    assert len(posthog.people.persons()) == 1


def test_a_resend_after_a_device_id_became_a_user_id_sends_each_event_once(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """Device "x20" is used anonymously in one run; user "x20" appears in a later run; then
    the whole range is sent again (`meltano state clear`). The re-send must give the device's
    event the distinct_id it was first sent with: PostHog deduplicates by uuid and
    distinct_id, so another one would store the event twice."""
    device_event = amplitude_event(0, None, "x20", 1, anonprop="from-device-x20")
    user_event = amplitude_event(1, "x20", "dv20", 2, plan="user-x20")
    run_ok(tmp_path, posthog, [device_event])
    run_ok(tmp_path, posthog, [user_event])
    first = {(e["uuid"], e["distinct_id"]) for e in posthog.events if e["event"] == "Viewed"}
    run_ok(tmp_path, posthog, [device_event, user_event])
    again = {(e["uuid"], e["distinct_id"]) for e in posthog.events if e["event"] == "Viewed"}
    assert again == first and len(first) == 2
    people = posthog.people
    device = people.person("x20")
    assert device is not None and device.distinct_ids == {"x20"}
    assert device.properties["anonprop"] == "from-device-x20"
    user = people.person("amplitude_user:x20")
    assert user is not None and user.distinct_ids == {"amplitude_user:x20", "dv20"}
    assert user.properties["plan"] == "user-x20" and "anonprop" not in user.properties
    assert people.person("amplitude_device:x20") is None


def test_real_ids_shaped_like_the_targets_own_ids_stay_their_own_persons(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """User "c91" gets "amplitude_user:c91" (its id is already ann91's device); a real user
    whose id is literally "amplitude_user:c91", and one named "amplitude_group_updates", must
    not land on the made-up ids' persons."""
    group_row = amplitude_event(5, None, None, 5)
    group_row["event_type"] = "$groupidentify"
    group_row["groups"] = {"company": ["servco"]}
    group_row["group_properties"] = {"company": {"servco": {"name": "Serv"}}}
    records = [
        amplitude_event(0, "ann91", "c91", 1, me="ann91"),
        amplitude_event(1, "c91", "d91", 2, me="c91"),
        amplitude_event(2, "amplitude_user:c91", "d92", 3, me="literal user"),
        amplitude_event(3, "amplitude_group_updates", "d93", 4, me="literal group"),
        amplitude_event(4, None, "amplitude_device:d94", 4, me="literal device"),
        group_row,
    ]
    stderr = run_ok(tmp_path, posthog, records)
    people = posthog.people
    made_up = people.person("amplitude_user:c91")
    assert made_up is not None and made_up.distinct_ids == {"amplitude_user:c91", "d91"}
    assert made_up.properties["me"] == "c91"
    by_me = {p.properties.get("me"): p for p in people.persons()}
    literal = by_me["literal user"]
    assert literal.distinct_ids == {"d92", hashed_id("amplitude_user:c91")}
    assert by_me["literal group"].distinct_ids == {"d93", hashed_id("amplitude_group_updates")}
    assert by_me["literal device"].distinct_ids == {hashed_id("amplitude_device:d94")}
    updates = people.person("amplitude_group_updates")
    assert updates is not None and "me" not in updates.properties
    assert posthog.people.groups()[("company", "servco")] == {"name": "Serv"}
    assert "3 events with an id of the form of the target's own ids" in stderr


@pytest.mark.parametrize("later_run", [False, True])
def test_a_user_on_a_device_with_its_own_id_is_one_person_with_that_device(
    tmp_path: Path, posthog: PostHogStandIn, later_run: bool
) -> None:
    """Apps that set device_id = user_id: user "zz2" on device "zz2", then anonymous events of
    device "zz2" (logged out), in the same run or a later one, are one person; and device
    "zz1" used anonymously first, then by user "zz1", is one person without a log line
    saying they are kept apart."""
    records = [
        amplitude_event(0, "zz2", "zz2", 1, stage="user"),
        amplitude_event(1, None, "zz2", 2, stage="after-logout"),
        amplitude_event(2, None, "zz1", 1, stage="anon"),
        amplitude_event(3, "zz1", "zz1", 2, stage="user"),
    ]
    if later_run:
        stderr = run_ok(tmp_path, posthog, records[:1] + records[2:3])
        stderr += run_ok(tmp_path, posthog, records[1:2] + records[3:])
    else:
        stderr = run_ok(tmp_path, posthog, records)
    people = posthog.people
    zz2 = people.person("zz2")
    assert zz2 is not None and zz2.distinct_ids == {"zz2"}
    assert zz2.properties["stage"] == "after-logout"
    assert people.person("amplitude_device:zz2") is None
    zz1 = people.person("zz1")
    assert zz1 is not None and zz1.distinct_ids == {"zz1", "amplitude_user:zz1"}
    assert zz1.properties["stage"] == "user"
    assert "kept on separate PostHog persons" not in stderr
    assert not people.warnings


@pytest.mark.parametrize("later_run", [False, True])
def test_an_anonymous_row_of_a_shared_device_counts_for_the_user_its_amplitude_id_names(
    tmp_path: Path, posthog: PostHogStandIn, later_run: bool
) -> None:
    """Device "dshared" is tied to ua; ub uses it later, logs out, and an anonymous row follows
    that Amplitude attributes to ub (amplitude_id 222, ub's snapshot): ub's properties, not
    ua's, in the same run or a later one."""
    records = [
        amplitude_event(0, "ua", "dshared", 1, who="a", plan="a-plan"),
        amplitude_event(1, "ub", "dshared", 2, who="b", plan="b-plan"),
        amplitude_event(2, None, "dshared", 3, who="b", plan="b-newer"),
    ]
    for record, amplitude_id in zip(records, (111, 222, 222), strict=True):
        record["amplitude_id"] = amplitude_id
    if later_run:
        run_ok(tmp_path, posthog, records[:2])
        run_ok(tmp_path, posthog, records[2:])
    else:
        run_ok(tmp_path, posthog, records)
    people = posthog.people
    ua = people.person("ua")
    assert ua is not None and ua.distinct_ids == {"ua", "dshared"}
    assert (ua.properties["who"], ua.properties["plan"]) == ("a", "a-plan")
    ub = people.person("ub")
    assert ub is not None and ub.distinct_ids == {"ub"}
    assert (ub.properties["who"], ub.properties["plan"]) == ("b", "b-newer")
