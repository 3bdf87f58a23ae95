"""Dirty records through the real target CLI: exact integers, one string form for numeric ids,
time fallbacks with a marker, derived uuids, dead letters holding the record as exported, and
tap-amplitude's unreadable lines kept byte for byte (issue 11)."""

from __future__ import annotations

import base64
import json
import math
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from target_posthog.event_keys import record_uuid

from tests.target_support import (
    SCHEMA,
    StateWatcher,
    TargetRun,
    is_export_event,
    posthog,
    record,
    run_target,
    start_target,
    state,
    target_config,
)
from tests.testbed.posthog import PostHogStandIn

__all__ = ["posthog"]  # a fixture, used by name

pytestmark = pytest.mark.timeout(120)

BASE = {
    "uuid": "0b5f3c1e-7d2a-4c8b-9e6f-1a2b3c4d5e60",
    "event_type": "Paid",
    "event_time": "2024-03-01T05:10:00.000000+00:00",
    "client_event_time": "2024-03-01T05:09:58.000000+00:00",
    "server_received_time": "2024-03-01T05:10:01.000000+00:00",
    "server_upload_time": "2024-03-01T05:10:02.000000+00:00",
    "device_id": "dev-1",
    "user_id": "user-1",
}
UNREADABLE_SCHEMA = {
    "type": "SCHEMA",
    "stream": "unreadable_lines",
    "key_properties": ["member", "line_number"],
    "schema": {
        "type": "object",
        "properties": {
            "member": {"type": "string"},
            "line_number": {"type": "integer"},
            "reason": {"type": "string"},
            "line_base64": {"type": "string"},
            "hour": {"type": ["string", "null"]},
        },
    },
}


def events_of(posthog: PostHogStandIn) -> list[dict[str, Any]]:
    return [e for e in posthog.events if is_export_event(e)]


def letters(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def test_integers_of_any_width_reach_posthog_exactly(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    posthog.keep_raw_events = lambda raw: True
    wide = 123456789012345678901234567890
    values = [wide, -wide, 2**64, -(2**63) - 1, 2**64 - 1, 10**60]
    records = [
        BASE | {"uuid": str(uuid.UUID(int=n + 1)), "event_properties": {"order_id": v, "l": [v]}}
        for n, v in enumerate(values)
    ]
    lines = [orjson.dumps(SCHEMA)]
    lines += [json.dumps(record(r)).encode() for r in records]  # the tap writes them exactly
    config = target_config(tmp_path, posthog)
    run = run_target_lines(config, lines, tmp_path, posthog)
    assert run.returncode == 0, run.stderr
    sent = [raw for raw in posthog.raw_events if b"$create_alias" not in raw]
    assert len(sent) == len(values)
    for raw, value in zip(sent, values, strict=True):
        digits = str(value).encode()
        assert b'"order_id":' + digits + b"," in raw and b'"l":[' + digits + b"]" in raw
        assert json.loads(raw)["properties"]["order_id"] == value


def test_a_wide_integer_in_user_properties_reaches_the_person_exactly(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """Person properties are stored in the registry and sent after the events: both exact."""
    wide = 123456789012345678901234567890
    records = [
        BASE | {"uuid": str(uuid.UUID(int=1)), "user_id": "user-wide", "device_id": "dev-w",
                "user_properties": {"order_count": wide, "plan": "gold"}},
        BASE | {"uuid": str(uuid.UUID(int=2)), "user_id": "user-plain", "device_id": "dev-p",
                "user_properties": {"plan": "a"}},
    ]  # fmt: skip
    lines = [orjson.dumps(SCHEMA)] + [json.dumps(record(r)).encode() for r in records]
    config = target_config(tmp_path, posthog)
    run = run_target_lines(config, lines, tmp_path, posthog)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    person = posthog.people.person("user-wide")
    assert person is not None
    assert person.properties["order_count"] == wide and person.properties["plan"] == "gold"
    plain = posthog.people.person("user-plain")
    assert plain is not None and plain.properties["plan"] == "a"
    # A rerun finds the stored (exact) values unchanged: nothing new to send.
    before = len(posthog.events)
    rerun = run_target_lines(config, lines, tmp_path, posthog)
    assert rerun.returncode == 0, rerun.stderr
    assert [e for e in posthog.events[before:] if not is_export_event(e)] == []


def run_target_lines(
    config: dict[str, Any], lines: list[bytes], tmp_path: Path, posthog: PostHogStandIn
) -> TargetRun:
    """run_target with message lines given as bytes (so a wide integer stays exact)."""
    process = start_target(config, tmp_path)
    watcher = StateWatcher(process, posthog)
    assert process.stdin is not None and process.stderr is not None
    process.stdin.write(b"".join(line + b"\n" for line in lines))
    process.stdin.close()
    stderr = process.stderr.read().decode()
    process.wait(timeout=60)
    watcher.join()
    return TargetRun(process.returncode, watcher.states, "".join(watcher.lines), stderr, [])


def test_a_numeric_id_has_one_string_form_whatever_its_json_spelling(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    spellings = [b"4242424242", b"4242424242.0", b"4.242424242e9", b"4242424242.000"]
    lines = [orjson.dumps(SCHEMA)]
    for n, spelled in enumerate(spellings):
        body = orjson.dumps(BASE | {"uuid": str(uuid.UUID(int=n + 1)), "device_id": None})
        lines.append(b'{"type":"RECORD","stream":"events","record":' + body[:-1] + b',"user_id":'
                     + spelled + b"}}")  # fmt: skip
    run = run_target_lines(target_config(tmp_path, posthog), lines, tmp_path, posthog)
    assert run.returncode == 0, run.stderr
    assert [e["distinct_id"] for e in events_of(posthog)] == ["4242424242"] * len(spellings)
    # A wide numeric id keeps every digit.
    wide = b"123456789012345678901234567890"
    body = orjson.dumps(BASE | {"uuid": str(uuid.UUID(int=99)), "device_id": None})
    line = b'{"type":"RECORD","stream":"events","record":' + body[:-1] + b',"user_id":' + wide
    run = run_target_lines(
        target_config(tmp_path, posthog), [orjson.dumps(SCHEMA), line + b"}}"], tmp_path, posthog
    )
    assert events_of(posthog)[-1]["distinct_id"] == wide.decode()


@pytest.mark.parametrize(
    ("change", "timestamp", "source"),
    [
        ({}, "2024-03-01T05:10:00.000000+00:00", None),
        ({"event_time": None}, "2024-03-01T05:09:58.000000+00:00", "client_event_time"),
        (
            {"event_time": "2024:03:01 05:10:00.000000", "client_event_time": "soon"},
            "2024-03-01T05:10:01.000000+00:00",
            "server_received_time",
        ),
        # Issue 11, input 6: no event_time, a valid client_event_time (Amplitude's own form).
        (
            {"event_time": "", "client_event_time": "2024-03-01 05:09:57.000000"},
            "2024-03-01T05:09:57.000000+00:00",
            "client_event_time",
        ),
    ],
    ids=["event_time", "client_event_time", "server_received_time", "amplitude-form"],
)
def test_the_timestamp_falls_back_to_client_then_server_time_and_says_which(
    change: dict[str, Any],
    timestamp: str,
    source: str | None,
    tmp_path: Path,
    posthog: PostHogStandIn,
) -> None:
    run = run_target(
        target_config(tmp_path, posthog), [SCHEMA, record(BASE | change)], tmp_path, posthog
    )
    assert run.returncode == 0, run.stderr
    (event,) = events_of(posthog)
    assert event["timestamp"] == timestamp
    assert event["properties"].get("$amplitude_timestamp_from") == source


def test_a_record_without_any_time_is_dead_lettered_as_exported_and_the_rest_flows(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    bad = BASE | {
        "uuid": str(uuid.UUID(int=7)),
        "event_time": "2024:03:01 05:10:00.000000",  # issue 11's unreadable time, untouched
        "client_event_time": None,
        "server_received_time": "not yet",
    }
    good = BASE | {"uuid": str(uuid.UUID(int=8))}
    config = target_config(tmp_path, posthog)
    run = run_target(
        config, [SCHEMA, record(bad), record(good), state({"s": 1})], tmp_path, posthog
    )
    assert run.returncode == 0, run.stderr
    assert [e["uuid"] for e in events_of(posthog)] == [good["uuid"]]
    (letter,) = letters(Path(config["dead_letter_path"]))
    assert letter["record"] == bad  # field for field as the tap sent it
    assert letter["reason"].startswith("no time: event_time, client_event_time, server_received")
    assert "1 dead-lettered" in run.stderr and ": 1 no time," in run.stderr
    said = [line.split(" | ")[-1] for line in run.stderr.splitlines() if "dead-lettered" in line]
    assert said[0] == (
        f"dead-lettered events record uuid {bad['uuid']}: {letter['reason']} (to "
        f"{config['dead_letter_path']}; further records of this kind are counted in the summary)"
    )
    assert "not yet" not in run.stderr and "2024:03:01" not in run.stderr  # no content
    assert run.states[-1] == {"s": 1}


@pytest.mark.parametrize("stream_maps", [False, True], ids=["lean-path", "sdk-path"])
def test_a_record_without_its_key_property_is_delivered_with_the_taps_derived_uuid(
    stream_maps: bool, tmp_path: Path, posthog: PostHogStandIn
) -> None:
    # Issue 11, input 1, as another tap might send it (without the key the schema declares).
    exported = {
        "event_type": "Opened App",
        "event_time": "2024-03-01 05:10:00.000000",
        "device_id": "dev-aaaa1",
        "user_id": "user-aaaa1",
        "$insert_id": "ins-1",
        "server_upload_time": "2024-03-01 05:10:01.000000",
    }
    no_insert_id = {k: v for k, v in exported.items() if k != "$insert_id"} | {"n": 2}
    config = target_config(tmp_path, posthog)
    if stream_maps:
        config["stream_maps"] = {"events": {"mapped": "'yes'"}}  # the SDK's own record path
    messages = [SCHEMA, record(exported), record(no_insert_id), state({"s": 1})]
    run = run_target(config, messages, tmp_path, posthog)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    events = {e["properties"].get("$amplitude_insert_id"): e for e in events_of(posthog)}
    assert (
        events["ins-1"]["uuid"]
        == record_uuid(exported)
        == str(
            uuid.uuid5(
                uuid.UUID("6b1c9f3e-2f4d-5a8e-9c70-3d1e8a5b4f21"),
                "insert_id\x1fdev-aaaa1\x1fuser-aaaa1\x1fins-1",
            )
        )
    )
    # The whole-record rule covers the record as the target receives it (after stream maps).
    received = no_insert_id | ({"mapped": "yes"} if stream_maps else {})
    assert events[None]["uuid"] == record_uuid(received)
    assert all(e["properties"]["$amplitude_uuid_derived"] is True for e in events.values())
    assert run.states[-1] == {"s": 1}


def test_a_record_the_sdk_refuses_is_dead_lettered_with_the_reason_and_the_rest_flows(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    config = target_config(tmp_path, posthog)
    bad = {"member": "m.json.gz", "reason": "x"}  # no line_number: the key the schema declares
    messages = [
        UNREADABLE_SCHEMA,
        {"type": "RECORD", "stream": "unreadable_lines", "record": bad},
        SCHEMA,
        record(BASE),
        state({"s": 2}),
    ]
    run = run_target(config, messages, tmp_path, posthog)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert [e["uuid"] for e in events_of(posthog)] == [BASE["uuid"]]
    (letter,) = letters(Path(config["dead_letter_path"]))
    assert letter["record"] == bad and letter["stream"] == "unreadable_lines"
    assert "MissingKeyPropertiesError" in letter["reason"]
    said = [line.split(" | ")[-1] for line in run.stderr.splitlines() if "dead-lettered" in line]
    assert said[0] == (
        "dead-lettered unreadable_lines record without a uuid: refused by singer-sdk: "
        "MissingKeyPropertiesError (the reason in full is in the letter) (to "
        f"{config['dead_letter_path']}; further records of this kind are counted in the summary)"
    )


def test_unreadable_lines_are_kept_byte_for_byte_next_to_the_dead_letters_once(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    lines = [b"null", b'{"event_type":"Broken","user_id":"u', b"\x00\xff\xfe garbage", b"[]"]
    set_aside = [
        {
            "source": "/exports/123456_2024-03-01_5#0.json.gz",
            "member": "123456_2024-03-01_5#0.json.gz",
            "line_number": n + 2,
            "reason": "not JSON",
            "line_base64": base64.b64encode(line).decode(),
            "hour": "2024-03-01T05:00:00+00:00",
        }
        for n, line in enumerate(lines)
    ]
    messages = [
        SCHEMA,
        record(BASE),
        UNREADABLE_SCHEMA,
        *({"type": "RECORD", "stream": "unreadable_lines", "record": r} for r in set_aside),
        state({"s": 3}),
    ]
    config = target_config(tmp_path, posthog)
    for _ in range(2):  # a resumed run reads the same window again: nothing is kept twice
        run = run_target(config, messages, tmp_path, posthog)
        assert run.returncode == 0, run.stderr
        assert f"{len(lines)} unreadable lines set aside" in run.stderr.splitlines()[-1]
    raw = tmp_path / "dead-letter.unreadable-lines.raw"
    index = tmp_path / "dead-letter.unreadable-lines.jsonl"
    assert raw.read_bytes() == b"".join(line + b"\n" for line in lines)
    assert letters(index) == set_aside
    assert oct(raw.stat().st_mode & 0o777) == "0o600"
    assert not Path(config["dead_letter_path"]).exists()  # they are not dead letters
    assert run.states[-1] == {"s": 3}


def nested(depth: int) -> Any:
    """A value `depth` arrays deep (`[[...[1]...]]`)."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_any_record_a_python_tap_writes_is_delivered_repaired_or_kept_byte_for_byte(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """Python's json.dumps writes a lone surrogate as "\\ud83d" and NaN/Infinity bare (another
    tap feeding target-posthog); records can nest deeper than a PostHog payload can be
    written. None stops the run: repaired and named in $amplitude_repairs, or set aside byte
    for byte with one line naming the input line and stream."""

    def event(n: int, **fields: Any) -> dict[str, Any]:
        return BASE | {"uuid": str(uuid.UUID(int=n)), "event_type": f"E{n}", **fields}

    deepest = 254 - 3  # the message, record and event_properties hold 3 levels
    delivered = [
        event(1, event_properties={"text": "nice \ud83d", "\udc00key": 1}),
        event(2, event_properties={"x": math.nan, "y": math.inf, "z": [-math.inf]}),
        event(3, event_properties={"d": nested(deepest)}),
        event(4),
        event(10, event_properties={"wide": "WIDE"}),  # 5,000 digits: no reader holds it
    ]
    kept = [
        event(5, user_id="u\ud800"),  # a repair would make two users one
        event(6, groups={"company": "\udfff"}),
        event(7, event_properties={"d": nested(deepest + 1)}),
        event(8, event_properties={"d": nested(300)}),
        event(9, event_properties={"d": "DEEP"}),
    ]
    lines = [orjson.dumps(SCHEMA)] + [json.dumps(record(r)).encode() for r in delivered]
    lines[-1] = lines[-1].replace(b'"WIDE"', b"7" * 5000)
    lines[3:3] = [json.dumps(record(r)).encode() for r in kept]  # between the good ones
    lines[7] = lines[7].replace(b'"DEEP"', b"[" * 5000 + b"]" * 5000)  # too deep for json.dumps
    lines.append(orjson.dumps(state({"s": 1})))
    run = run_target_lines(target_config(tmp_path, posthog), lines, tmp_path, posthog)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert run.states[-1] == {"s": 1}
    sent = {e["event"]: e["properties"] for e in events_of(posthog)}
    assert sorted(sent) == ["E1", "E10", "E2", "E3", "E4"]
    assert sent["E10"]["wide"] == "7" * 5000
    assert sent["E10"]["$amplitude_repairs"] == [
        "integer of more than 4300 digits kept as a string of its exact text (Python's JSON "
        "readers, singer-sdk targets' included, refuse wider integers)"
    ]
    assert sent["E1"]["text"] == "nice \ufffd" and sent["E1"]["\ufffdkey"] == 1
    assert sent["E1"]["$amplitude_repairs"] == ["lone UTF-16 surrogate escape replaced by U+FFFD"]
    assert (sent["E2"]["x"], sent["E2"]["y"], sent["E2"]["z"]) == ("NaN", "Infinity", ["-Infinity"])
    assert sent["E2"]["$amplitude_repairs"] == [
        "NaN or Infinity (no JSON number) kept as a string of its text"
    ]
    assert sent["E3"]["d"] == nested(deepest) and "$amplitude_repairs" not in sent["E3"]
    raw = (tmp_path / "dead-letter.unreadable-lines.raw").read_bytes()
    assert raw == b"".join(line + b"\n" for line in lines[3:8])  # byte for byte, in order
    for number in range(4, 9):
        (said,) = [text for text in run.stderr.splitlines() if f"input line {number} " in text]
        assert "(stream events): set aside byte for byte in" in said
    assert "nested 255 levels deep" in run.stderr and "nested 5003 levels deep" in run.stderr
    assert "user_id needs a repair" in run.stderr
    summary = run.stderr.splitlines()[-1]
    assert "5 unreadable lines set aside" in summary
    assert "3 input records repaired" in summary


def test_a_record_message_singer_sdk_would_stop_on_is_kept_byte_for_byte(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """A RECORD whose record is no object or that names no stream made singer-sdk stop the
    run (a TypeError traceback; "missing required stream key"): set aside instead. A
    byte-order mark before a message is dropped, the repair named."""
    odd = [
        b'{"type":"RECORD","stream":"events","record":[1]}',
        b'{"type":"RECORD","stream":"events","record":null}',
        b'{"type":"RECORD","record":{"event_type":"E"}}',
    ]
    bom = b"\xef\xbb\xbf" + orjson.dumps(record(BASE | {"uuid": str(uuid.UUID(int=7))}))
    lines = [
        orjson.dumps(SCHEMA),
        *odd,
        bom,
        orjson.dumps(record(BASE)),
        orjson.dumps(state({"s": 1})),
    ]
    run = run_target_lines(target_config(tmp_path, posthog), lines, tmp_path, posthog)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert run.states[-1] == {"s": 1}
    raw = (tmp_path / "dead-letter.unreadable-lines.raw").read_bytes()
    assert raw == b"".join(line + b"\n" for line in odd)
    said = [text for text in run.stderr.splitlines() if "set aside byte for byte" in text]
    assert [text.split(": ")[-1] for text in said] == [
        "its record is not a JSON object",
        "its record is not a JSON object",
        "it names no stream",
    ]
    sent = {e["uuid"]: e["properties"] for e in events_of(posthog)}
    assert sent[str(uuid.UUID(int=7))]["$amplitude_repairs"] == ["byte-order mark removed"]
    assert BASE["uuid"] in sent
