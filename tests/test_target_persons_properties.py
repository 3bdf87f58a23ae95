"""Person and group properties, one case at a time: newest snapshots, values changing back,
device context, PostHog instructions inside an export, size limits, dry runs; asserted in the
PostHog stand-in's final persons and groups."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.persons_harness import (
    amplitude_event,
    run_ok,
    updates_in,
)
from tests.target_support import (
    messages_with_states,
    run_target,
    target_config,
)
from tests.target_support import (
    posthog as posthog,  # the fixture
)
from tests.testbed.posthog import PostHogStandIn


def test_anonymous_properties_before_and_after_login_are_the_users(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """A device used anonymously, then logged in, then anonymously again (in upload order,
    with a late upload): the user ends with the newest values of all of them, as Amplitude
    shows (it merges a device's anonymous history into the user who logs in on it)."""
    records = [
        amplitude_event(0, None, "tablet", 1, plan="free", theme="dark", initial_referrer="ads"),
        amplitude_event(1, "ann", "tablet", 2, plan="trial"),
        amplitude_event(2, None, "tablet", 5, plan="pro"),  # newest plan: anonymous, after login
        amplitude_event(3, "ann", "phone", 3, plan="trial", initial_referrer="mail"),
        amplitude_event(
            4, None, "tablet", 0, theme="light", initial_referrer="EMPTY"
        ),  # late upload
    ]
    run_ok(tmp_path, posthog, records)
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
    run_ok(tmp_path, posthog, [amplitude_event(5, None, "tablet", 6, plan="team")])
    ann = posthog.people.person("ann")
    assert ann is not None and ann.properties["plan"] == "team"


def test_properties_amplitude_no_longer_shows_are_removed(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """user_properties is the user's whole snapshot: the person ends as the newest one (by
    event time), in a later run and whatever the upload order; a live property history never
    had stays."""
    posthog.people.add_person(["ann"], {"email": "ann@example.com"})
    run_ok(
        tmp_path, posthog, [amplitude_event(0, "ann", "d", 1, plan="pro", coupon="X", beta=True)]
    )
    ann = posthog.people.person("ann")
    assert ann is not None and ann.properties["coupon"] == "X"
    late = amplitude_event(2, "ann", "d", 0, plan="free", legacy=1)  # older, uploaded late
    run_ok(tmp_path, posthog, [amplitude_event(1, "ann", "d", 2, plan="pro", beta=False), late])
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
        run_ok(tmp_path, posthog, [amplitude_event(n, "ann", "d", n + 1, plan=plan)])
    run_ok(tmp_path, posthog, [amplitude_event(2, "ann", "d", 3, plan="A")])
    ann = posthog.people.person("ann")
    assert ann is not None and ann.properties["plan"] == "A"
    updates = [e for e in updates_in(posthog) if e["distinct_id"] == "ann"]
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
    record = {**amplitude_event(0, "ann", "d", 1, plan="pro"), "platform": "Web", **device}
    run_ok(tmp_path, posthog, [record])
    ann = posthog.people.person("ann")
    assert ann is not None
    assert (ann.properties["$os"], ann.properties["$device_type"]) == expected


def test_posthog_instructions_inside_event_properties_are_kept_but_not_obeyed(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """`$process_person_profile`, `$groups` and `$cookieless_mode` in an export's
    event_properties would change what PostHog does with the event (no person, a group the
    record never named, a cookieless distinct_id): kept as `$amplitude_<key>`, not obeyed."""
    record = amplitude_event(0, "ann", "d", 1, plan="pro")
    record["event_properties"] = {
        "$process_person_profile": False,
        "$groups": {"company": "someone-else"},
        "$cookieless_mode": True,
        "item": "x",
    }
    run_ok(tmp_path, posthog, [record])
    ann = posthog.people.person("ann")
    assert ann is not None and ann.properties["plan"] == "pro"
    (event,) = [e for e in posthog.events if e["event"] == "Viewed"]
    properties = event["properties"]
    assert not {"$process_person_profile", "$groups", "$cookieless_mode"} & properties.keys()
    assert properties["$amplitude_$process_person_profile"] is False
    assert properties["$amplitude_$groups"] == {"company": "someone-else"}
    assert properties["$amplitude_$cookieless_mode"] is True
    assert properties["item"] == "x"


def test_a_property_too_large_for_posthog_is_set_aside_and_the_rest_arrives(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """PostHog refuses a whole person update beyond about 640 KB of properties: the largest
    property is set aside (dead-letter file, counted, one line), the rest reaches the person,
    and an older value of it does not stay."""
    run_ok(tmp_path, posthog, [amplitude_event(0, "ann", "d", 1, plan="free", notes="short")])
    notes = "n" * 700_000
    stderr = run_ok(tmp_path, posthog, [amplitude_event(1, "ann", "d", 2, plan="pro", notes=notes)])
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
        amplitude_event(0, None, "tablet", 1, plan="free"),
        amplitude_event(1, "ann", "tablet", 2, plan="trial"),
        amplitude_event(2, None, "tablet", 5, plan="pro"),
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
        amplitude_event(0, "ann", "tablet", 1, plan="pro"),
        amplitude_event(1, "bob", "phone", 1, plan="free"),
        amplitude_event(2, None, "tablet", 2, plan="pro", seen=True),
    ]
    run_ok(tmp_path, posthog, first)
    later = [
        *first,
        amplitude_event(3, "bob", "phone", 3, plan="team"),  # bob changed; ann did not
        amplitude_event(4, "cid", "c-1", 3, plan="free"),  # a new user
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
    before = len(updates_in(posthog))
    run_ok(tmp_path, posthog, later)
    sent = updates_in(posthog)[before:]
    assert sorted(shown, key=lambda e: e["distinct_id"]) == sorted(
        sent, key=lambda e: e["distinct_id"]
    )


def test_the_properties_of_an_event_too_large_for_posthog_still_reach_its_person_and_group(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """The newest event is dead-lettered (too large once mapped): its user_properties and
    group_properties snapshot is still the newest, sent as the person's and group's update."""
    big = "q" * 1_000_000
    old = amplitude_event(0, "um1", "dm1", 1, plan="old")
    old["groups"] = {"company": ["co-m"]}
    old["group_properties"] = {"company": {"co-m": {"v": "old"}}}
    newest = amplitude_event(1, "um1", "dm1", 2, plan="newest")
    newest["groups"] = {"company": ["co-m"]}
    newest["group_properties"] = {"company": {"co-m": {"v": "newest"}}}
    newest["event_properties"] = {"big": big}
    run_ok(tmp_path, posthog, [old, newest])
    dead = (tmp_path / "dead-letter.jsonl").read_bytes().splitlines()
    assert len(dead) == 1 and b"bytes once mapped" in dead[0]
    person = posthog.people.person("um1")
    assert person is not None and person.distinct_ids == {"um1", "dm1"}
    assert person.properties["plan"] == "newest"
    assert posthog.people.groups()[("company", "co-m")]["v"] == "newest"


@pytest.mark.parametrize("split", [False, True])
def test_a_device_that_logs_in_in_a_later_run_loses_the_names_its_user_lacks(
    tmp_path: Path, posthog: PostHogStandIn, split: bool
) -> None:
    """Device d25 is used anonymously ({anon: 1}), then user u25 logs in on it ({me: u25}, the
    newest snapshot): the merged person is {me: u25}, whether both are in one run or the login
    comes in a later run."""
    records = [
        amplitude_event(0, None, "d25", 1, anon=1),
        amplitude_event(1, "u25", "d25", 2, me="u25"),
    ]
    if split:
        run_ok(tmp_path, posthog, records[:1])
        run_ok(tmp_path, posthog, records[1:])
    else:
        run_ok(tmp_path, posthog, records)
    person = posthog.people.person("u25")
    assert person is not None and person.distinct_ids == {"u25", "d25"}
    assert {k: v for k, v in person.properties.items() if not k.startswith("$")} == {"me": "u25"}
