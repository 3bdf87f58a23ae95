"""Values the mapping must not lose or let PostHog change: event properties named like the
export's own mapped fields, event times PostHog would move, ids PostHog would cut or merge,
and the dead-letter summary (issue 11, through the real target CLI and the PostHog stand-in)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from target_posthog.deadletter import DeadLetters
from target_posthog.mapping import map_record

from tests.target_support import (
    SCHEMA,
    TargetRun,
    is_export_event,
    posthog,
    record,
    run_target,
    state,
    target_config,
)
from tests.testbed.posthog import PostHogStandIn

__all__ = ["posthog"]  # a fixture, used by name

pytestmark = pytest.mark.timeout(120)

BASE = {
    "uuid": "0b5f3c1e-7d2a-4c8b-9e6f-1a2b3c4d5e61",
    "event_type": "Viewed",
    "event_time": "2024-03-01T05:10:00.000000+00:00",
    "client_event_time": "2024-03-01T05:09:58.000000+00:00",
    "server_received_time": "2024-03-01T05:10:01.000000+00:00",
    "device_id": "dev-1",
    "user_id": "user-1",
}

# What a tap that finished ends with: without it the last line points at the tap instead.
FINISHED = state({"bookmarks": {}})


def raw_export_events(posthog: PostHogStandIn) -> list[bytes]:
    return [raw for raw in posthog.raw_events if is_export_event(orjson.loads(raw))]


def test_event_properties_never_overwrite_the_exports_fields_nor_are_overwritten(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    posthog.keep_raw_events = lambda raw: True
    clashing = {
        "[Amplitude] Page URL": "https://a.example/x",
        "$current_url": "https://b.example/y",
        "$lib": "segment",
        "$ip": "2.2.2.2",
        "$geoip_country_name": "France",
        "$session_id": "sess-from-props",
        "$browser": "Firefox",
        "analytics_source": "web",
        "$amplitude_session_id": "p",
        "$amplitude_user_id": "spoof",
        "$amplitude_foo": "ep",
        "$amplitude_clashing_event_properties": "mine",
        "same": 1,
        "$ip_copy": "1.1.1.1",
    }
    value = BASE | {
        "platform": "Web",
        "library": "amplitude-ts/2.0",
        "ip_address": "1.1.1.1",
        "os_name": "Chrome",
        "country": "Germany",
        "session_id": 1709269200000,
        "foo": "top",
        "event_properties": clashing,
    }
    run = run_target(
        target_config(tmp_path, posthog), [SCHEMA, record(value), FINISHED], tmp_path, posthog
    )
    assert run.returncode == 0, run.stderr
    (raw,) = raw_export_events(posthog)
    properties = orjson.loads(raw)["properties"]
    session = properties["$session_id"]
    assert properties == {
        # the export's own fields, each under its name
        "$amplitude_user_id": "user-1",
        "$amplitude_foo": "top",
        "$amplitude_platform": "Web",
        "$amplitude_client_event_time": "2024-03-01T05:09:58.000000+00:00",
        "$amplitude_server_received_time": "2024-03-01T05:10:01.000000+00:00",
        "[Amplitude] Page URL": "https://a.example/x",
        "$current_url": "https://a.example/x",
        "$lib": "amplitude-ts",
        "$lib_version": "2.0",
        "$ip": "1.1.1.1",
        "$geoip_country_name": "Germany",
        "$session_id": session,
        "$browser": "Chrome",
        "analytics_source": "amplitude",
        "$amplitude_session_id": 1709269200000,
        "same": 1,
        "$ip_copy": "1.1.1.1",
        "$device_id": "dev-1",
        "$amplitude_device_id": "dev-1",
        "$geoip_disable": True,
        # the event properties those names took, each kept with its value
        "$amplitude_clashing_event_properties": {
            "$current_url": "https://b.example/y",
            "$lib": "segment",
            "$ip": "2.2.2.2",
            "$geoip_country_name": "France",
            "$session_id": "sess-from-props",
            "$browser": "Firefox",
            "analytics_source": "web",
            "$amplitude_session_id": "p",
            "$amplitude_user_id": "spoof",
            "$amplitude_foo": "ep",
            "$amplitude_clashing_event_properties": "mine",
        },
    }
    assert session != "sess-from-props"
    summary = run.stderr.splitlines()[-1]
    assert (
        ", 1 events whose event_properties named a property the export's own fields map to "
        "(kept in $amplitude_clashing_event_properties)"
    ) in summary
    said = [line.split(" | ")[-1] for line in run.stderr.splitlines() if "one of the" in line]
    assert said == [
        f"events record uuid {BASE['uuid']}: one of the events whose event_properties named a "
        "property the export's own fields map to (kept in $amplitude_clashing_event_properties); "
        "further ones are counted in the summary"
    ]
    assert "b.example" not in run.stderr and "spoof" not in run.stderr


def test_event_times_posthog_would_move_fall_back_to_the_next_time_field_or_dead_letter(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    future = BASE | {
        "uuid": "0b5f3c1e-7d2a-4c8b-9e6f-1a2b3c4d5e62",
        "event_time": "2099-01-01 00:00:00.000000",
    }
    before_1970 = BASE | {
        "uuid": "0b5f3c1e-7d2a-4c8b-9e6f-1a2b3c4d5e63",
        "event_time": "1969-12-31 23:59:59.000000",
        "client_event_time": "2099-01-01 00:00:00.000000",
    }
    none_usable = BASE | {
        "uuid": "0b5f3c1e-7d2a-4c8b-9e6f-1a2b3c4d5e64",
        "event_time": "2099-01-01 00:00:00.000000",
        "client_event_time": "1960-01-01 00:00:00.000000",
        "server_received_time": "2098-01-01 00:00:00.000000",
    }
    config = target_config(tmp_path, posthog)
    messages = [SCHEMA, record(future), record(before_1970), record(none_usable), FINISHED]
    run = run_target(config, messages, tmp_path, posthog)
    assert run.returncode == 0, run.stderr
    sent = {e["uuid"]: e for e in posthog.events if is_export_event(e)}  # as PostHog stored
    assert sorted(sent) == [future["uuid"], before_1970["uuid"]]
    assert not [w for w in posthog.people.warnings if w[0] == "event_timestamp_in_future"]
    first, second = sent[future["uuid"]], sent[before_1970["uuid"]]
    assert first["timestamp"] == "2024-03-01T05:09:58.000000+00:00"
    assert first["properties"]["$amplitude_timestamp_from"] == "client_event_time"
    assert first["properties"]["$amplitude_event_time"] == "2099-01-01 00:00:00.000000"
    assert second["timestamp"] == "2024-03-01T05:10:01.000000+00:00"
    assert second["properties"]["$amplitude_timestamp_from"] == "server_received_time"
    assert second["properties"]["$amplitude_event_time"] == "1969-12-31 23:59:59.000000"
    (letter,) = [
        orjson.loads(line) for line in Path(config["dead_letter_path"]).read_bytes().splitlines()
    ]
    assert letter["record"] == none_usable
    assert letter["reason"] == (
        "no usable time: event_time, client_event_time, server_received_time missing, not "
        "times, more than 23 h after the run's start (PostHog would stamp the import time) "
        "or before 1970"
    )
    summary = run.stderr.splitlines()[-1]
    assert ": 1 no usable time," in summary
    assert (
        ", 2 events whose event_time is more than 23 h after the run's start or before 1970 "
        "(the next time field used, $amplitude_timestamp_from)"
    ) in summary
    assert (
        sum("one of the events whose event_time" in line for line in run.stderr.splitlines()) == 1
    )


def test_the_dead_letter_summary_groups_by_reason_without_record_values(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    placeholders = [
        BASE | {"uuid": f"0b5f3c1e-7d2a-4c8b-9e6f-1a2b3c4d5e7{n}", "user_id": u, "device_id": d}
        for n, (u, d) in enumerate([("None", "undefined"), ("null", "nil"), ("None", None)])
    ]
    config = target_config(tmp_path, posthog)
    run = run_target(
        config, [SCHEMA, *map(record, placeholders), record(BASE), FINISHED], tmp_path, posthog
    )
    assert run.returncode == 0, run.stderr
    summary = run.stderr.splitlines()[-1]
    path = config["dead_letter_path"]
    assert (
        f"3 dead-lettered ({path}): 3 no usable user_id or device_id, 0 unreadable lines set "
        f"aside ({tmp_path / 'dead-letter.unreadable-lines.jsonl'}), "
    ) in summary
    said = [line.split(" | ")[-1] for line in run.stderr.splitlines() if "dead-lettered ev" in line]
    assert said == [
        f"dead-lettered events record uuid {placeholders[0]['uuid']}: no usable user_id or "
        f"device_id (the reason in full is in the letter) (to {path}; further records of this "
        "kind are counted in the summary)"
    ]
    reasons = [orjson.loads(line)["reason"] for line in Path(path).read_bytes().splitlines()]
    assert reasons == [  # the particulars are in each letter
        "no usable user_id or device_id: user_id 'None', device_id 'undefined': placeholders "
        "that name nobody",
        "no usable user_id or device_id: user_id 'null', device_id 'nil': placeholders that "
        "name nobody",
        "no usable user_id or device_id: user_id 'None': placeholders that name nobody",
    ]


def test_summary_kinds_hold_no_quoted_values(tmp_path: Path) -> None:
    letters = DeadLetters(tmp_path / "dead-letter.jsonl")
    letters.add_record(
        "person_properties",
        "person property 'a: b' of 'user-1' is 700000 bytes: PostHog keeps at most about 640 KB",
        {"distinct_id": "user-1", "property": "a: b", "value": "x"},
    )
    assert letters.reasons() == "1 person property ... of ... is N bytes"


def repaired(identifier: str) -> str:
    """README: <first 100 characters, NUL as U+FFFD>#repaired-<SHA-256 of the UTF-8, hex>."""
    digest = hashlib.sha256(identifier.encode()).hexdigest()
    return identifier[:100].replace("\0", "\ufffd") + "#repaired-" + digest


def test_ids_posthog_would_cut_or_change_stay_apart_as_persons(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    long_a, long_b = "u" * 250 + "A", "u" * 250 + "B"
    nul, replaced = "ann\0x", "ann\ufffdx"  # PostHog's capture makes the first the second
    device_a, device_b = "d" * 250 + "1", "d" * 250 + "2"
    pairs = [
        (long_a, "dev-a"),
        (long_b, "dev-b"),
        (nul, "dev-c"),
        (replaced, "dev-d"),
        (None, device_a),
        (None, device_b),
    ]
    values = [
        BASE | {"uuid": f"0b5f3c1e-7d2a-4c8b-9e6f-1a2b3c4d5e8{n}", "user_id": u, "device_id": d}
        for n, (u, d) in enumerate(pairs)
    ]
    run = run_target(
        target_config(tmp_path, posthog),
        [SCHEMA, *map(record, values), FINISHED],
        tmp_path,
        posthog,
    )
    assert run.returncode == 0, run.stderr
    persons = {person.distinct_ids for person in posthog.people.persons()}
    assert persons == {
        frozenset({repaired(long_a), "dev-a"}),
        frozenset({repaired(long_b), "dev-b"}),
        frozenset({repaired(nul), "dev-c"}),
        frozenset({replaced, "dev-d"}),
        frozenset({repaired(device_a)}),
        frozenset({repaired(device_b)}),
    }
    sent = {e["uuid"]: e["properties"] for e in posthog.events if is_export_event(e)}
    originals = [(p.get("$amplitude_user_id"), p["$amplitude_device_id"]) for p in sent.values()]
    assert sorted(originals, key=str) == sorted(pairs, key=str)  # each original id kept
    summary = run.stderr.splitlines()[-1]
    assert (
        ", 5 events with an id longer than 183 characters or holding a NUL, which PostHog "
        "would cut or replace (sent as <first 100 characters>#repaired-<sha256>)"
    ) in summary


@pytest.mark.parametrize(("length", "hashed"), [(183, False), (184, True)])
def test_an_id_is_hashed_beyond_what_a_colliding_prefix_leaves_of_200(
    length: int, hashed: bool
) -> None:
    user_id = "u" * length
    mapped = map_record(BASE | {"user_id": user_id})
    assert mapped.user_id == (repaired(user_id) if hashed else user_id)
    assert len("amplitude_device:" + mapped.user_id) <= 200


def test_an_integer_minus_zero_reaches_posthog_with_its_sign(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    posthog.keep_raw_events = lambda raw: True
    minus_zero = orjson.Fragment(b"-0")
    value = BASE | {
        "event_properties": {
            "w": minus_zero,
            "a": [minus_zero, {"b": minus_zero}],
            "f": orjson.Fragment(b"-0.0"),
            "z": 0,
        }
    }
    run = run_target(
        target_config(tmp_path, posthog), [SCHEMA, record(value), FINISHED], tmp_path, posthog
    )
    assert run.returncode == 0, run.stderr
    (raw,) = raw_export_events(posthog)
    assert b'"w":-0,"a":[-0,{"b":-0}],"f":-0.0,"z":0,' in raw


def run_two(
    tmp_path: Path, posthog: PostHogStandIn, first: dict[str, Any], second: dict[str, Any]
) -> tuple[TargetRun, list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Run the target on two records: (the run, every event sent, export events' properties
    by distinct_id)."""
    run = run_target(
        target_config(tmp_path, posthog),
        [SCHEMA, record(first), record(second), FINISHED],
        tmp_path,
        posthog,
    )
    assert run.returncode == 0, run.stderr
    sent = [orjson.loads(raw) for raw in posthog.raw_events]
    return run, sent, {e["distinct_id"]: e["properties"] for e in sent if is_export_event(e)}


def test_a_property_named_like_a_renamed_instruction_is_kept_aside_not_lost(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    posthog.keep_raw_events = lambda raw: True
    first = BASE | {
        "event_properties": {"$set": {"a": 1}, "$amplitude_$set": "mine"},
        "user_properties": {"$groups": {"g": 1}, "$amplitude_$groups": "theirs", "plan": "x"},
    }
    second = BASE | {  # the other order, another user
        "uuid": "0b5f3c1e-7d2a-4c8b-9e6f-1a2b3c4d5e62",
        "user_id": "user-2",
        "event_properties": {"$amplitude_$cookieless_mode": "mine", "$cookieless_mode": True},
    }
    run, sent, by_user = run_two(tmp_path, posthog, first, second)
    assert by_user["user-1"]["$amplitude_$set"] == {"a": 1}
    assert by_user["user-1"]["$amplitude_clashing_event_properties"] == {"$amplitude_$set": "mine"}
    assert by_user["user-2"]["$amplitude_$cookieless_mode"] is True
    assert by_user["user-2"]["$amplitude_clashing_event_properties"] == {
        "$amplitude_$cookieless_mode": "mine"
    }
    (update,) = [e["properties"]["$set"] for e in sent if e["event"] == "$set"]
    assert update == {
        "$amplitude_$groups": {"g": 1},
        "plan": "x",
        "$amplitude_clashing_user_properties": {"$amplitude_$groups": "theirs"},
    }
    summary = run.stderr.splitlines()[-1]
    assert (
        ", 2 events whose event_properties named a property the export's own fields map to"
    ) in summary
    assert (
        ", 1 events whose user_properties held a property named like a renamed PostHog "
        "instruction beside it"
    ) in summary


def test_export_fields_named_like_the_targets_own_properties_are_kept_aside(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    posthog.keep_raw_events = lambda raw: True
    first = BASE | {
        "insert_id": "OTHER",
        "$insert_id": "ins-1",
        "timestamp_from": "OTHER-T",
        "event_time": "2099-01-01T00:00:00.000000+00:00",
        "clashing_event_properties": "OTHER-C",
        "library": "amplitude-ts/2.0",
        "event_properties": {"$lib": "segment"},
    }
    second = {  # the twins in the other order; no event property clashes
        "clashing_event_properties": "OTHER-C2",
        "insert_id": "OTHER2",
        **BASE,
        "uuid": "0b5f3c1e-7d2a-4c8b-9e6f-1a2b3c4d5e62",
        "user_id": "user-2",
        "$insert_id": "ins-2",
        "library": "amplitude-ts/2.0",
    }
    run, _, by_user = run_two(tmp_path, posthog, first, second)
    one, two = by_user["user-1"], by_user["user-2"]
    assert one["$amplitude_insert_id"] == "ins-1"
    assert one["$amplitude_timestamp_from"] == "client_event_time"
    assert one["$amplitude_clashing_event_properties"] == {"$lib": "segment"}
    assert one["$amplitude_clashing_fields"] == {
        "insert_id": "OTHER",
        "timestamp_from": "OTHER-T",
        "clashing_event_properties": "OTHER-C",
    }
    assert two["$amplitude_insert_id"] == "ins-2"
    assert "$amplitude_clashing_event_properties" not in two
    assert two["$amplitude_clashing_fields"] == {
        "clashing_event_properties": "OTHER-C2",
        "insert_id": "OTHER2",
    }
    assert (
        ", 2 events with an export field whose $amplitude_<field> name the target's own "
        "property or another field holds (kept in $amplitude_clashing_fields)"
    ) in run.stderr.splitlines()[-1]
