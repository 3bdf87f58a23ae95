"""Values exactly as exported, through the real tap into target-jsonl and target-posthog.

Each export line below holds values that a JSON parser or a target would change silently:
numbers beyond a double (``1e400``), long decimals, exponents, trailing zeros, ``-0.0``, ids
given as numbers in any spelling, times with offsets or nanoseconds, keys given twice, fields
named like the tap's own. The tap's RECORD bytes, the rows target-jsonl writes and the exact
bytes target-posthog sends PostHog are each compared with what tap-amplitude's README
("Numbers", "Times", "Fields the tap sets") says the user finds.
"""

from __future__ import annotations

import gzip
import json
import math
import subprocess
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from target_posthog.capture_ids import hashed_id

from tests.conftest import TAP_DAY, TapRun
from tests.meltano_harness import REPO_ROOT, install_plugins
from tests.target_support import posthog, start_target, target_config
from tests.testbed.posthog import PostHogStandIn

__all__ = ["posthog"]  # a fixture, used by name

pytestmark = pytest.mark.timeout(300)

MEMBER = "123456_2024-03-01_5#0.json.gz"
END = "2024-03-02T00:00:00+00:00"
TARGET_JSONL = REPO_ROOT / ".meltano" / "loaders" / "target-jsonl" / "venv" / "bin" / "target-jsonl"
HEAD = (
    b'"event_type":"Paid","event_time":"2024-03-01 05:10:00.000000",'
    b'"server_upload_time":"2024-03-01 05:10:01.000000","device_id":"dev-1"'
)


def line(uuid_digit: int, fields: bytes) -> bytes:
    return (
        b'{"uuid":"6f1d5a36-0c1b-4d7e-9a8f-2b3c4d5e6f7'
        + str(uuid_digit).encode()
        + b'",'
        + HEAD
        + b","
        + fields
        + b"}"
    )


# The numbers of one event_properties object as exported, and as every output must spell them.
NUMBERS = (
    b'"event_properties":{"a":1.10,"b":1E+2,"c":1e400,"d":-0.0,"e":1e19,'
    b'"f":12.345678901234567890123,"g":-1e400,"h":[1.10,2.50e-3],"i":1e-400,'
    b'"j":123456789012345678901234567890,"k":47.400309}'
)
NUMBERS_OUT = (
    b'"event_properties":{"a":1.10,"b":1E+2,"c":"1e400","d":-0.0,"e":1e19,'
    b'"f":12.345678901234567890123,"g":"-1e400","h":[1.10,2.50e-3],"i":"1e-400",'
    b'"j":123456789012345678901234567890,"k":47.400309}'
)


def local_run(run_tap: Callable[..., TapRun], tmp_path: Path, lines: list[bytes]) -> TapRun:
    folder = tmp_path / "export"
    folder.mkdir(exist_ok=True)
    (folder / MEMBER).write_bytes(gzip.compress(b"".join(item + b"\n" for item in lines)))
    run = run_tap({"export_path": str(folder), "start_date": TAP_DAY.isoformat(), "end_date": END})
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    return run


def record_lines(run: TapRun) -> list[bytes]:
    return [
        raw
        for raw in run.stdout.encode().splitlines()
        if raw.startswith(b'{"type":"RECORD","stream":"events"')
    ]


def events(run: TapRun) -> list[dict[str, Any]]:
    return [m["record"] for m in run.messages if m["type"] == "RECORD" and m["stream"] == "events"]


def posthog_payloads(tap_output: str, tmp_path: Path, posthog: PostHogStandIn) -> list[bytes]:
    """The exact bytes of each export event target-posthog sends for the tap's output."""
    posthog.keep_raw_events = lambda raw: b'"event":"Paid"' in raw
    process = start_target(target_config(tmp_path, posthog), tmp_path)
    _, stderr = process.communicate(tap_output.encode(), timeout=120)
    assert process.returncode == 0, stderr.decode()[-3000:]
    return list(posthog.raw_events)


def jsonl_rows(tap_output: str, tmp_path: Path) -> list[bytes]:
    """The lines target-jsonl (the Singer target on PyPI) writes for the tap's output."""
    install_plugins()
    out = tmp_path / "jsonl"
    config = tmp_path / "jsonl.json"
    config.write_text(json.dumps({"destination_path": str(out), "do_timestamp_file": False}))
    done = subprocess.run(
        [str(TARGET_JSONL), "--config", str(config)],
        input=tap_output,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return (out / "events.jsonl").read_bytes().splitlines()


# --- numbers -------------------------------------------------------------------------------


def test_numbers_reach_the_record_target_jsonl_and_posthog_as_exported(
    run_tap: Callable[..., TapRun], tmp_path: Path, posthog: PostHogStandIn
) -> None:
    exported = [
        line(0, NUMBERS),
        # kept aside in additional_properties: a number a number field cannot hold, new fields
        line(1, b'"location_lat":1e400,"location_lng":-0.0,"new_field":{"x":1.10,"y":1e19}'),
    ]
    run = local_run(run_tap, tmp_path, exported)
    first, second = record_lines(run)
    assert NUMBERS_OUT in first
    assert b'"repairs":["number beyond a double\'s range kept as a string' in first
    assert b'"location_lat":null' in second and b'"location_lng":-0.0' in second
    assert (
        b'"additional_properties":{"location_lat":"1e400","new_field":{"x":1.10,"y":1e19},'
        b'"number_texts":{"/location_lng":"-0.0","/additional_properties/new_field/x":"1.10",'
        b'"/additional_properties/new_field/y":"1e19"}}'
    ) in second
    assert b'"number_texts":{"/event_properties/a":"1.10","/event_properties/b":"1E+2",' in first
    done = next(text for text in run.stderr.splitlines() if "Done:" in text)
    assert "2 number beyond a double's range" in done

    # target-posthog sends the same text, byte for byte.
    sent = posthog_payloads(run.stdout, tmp_path, posthog)
    props_0 = next(raw for raw in sent if b'"a":1.10' in raw)
    assert (
        b'"a":1.10,"b":1E+2,"c":"1e400","d":-0.0,"e":1e19,"f":12.345678901234567890123,'
        b'"g":"-1e400","h":[1.10,2.50e-3],"i":"1e-400","j":123456789012345678901234567890,'
        b'"k":47.400309'
    ) in props_0
    assert b"number_texts" not in props_0  # a copy of what the payload holds exactly
    props_1 = next(raw for raw in sent if b"new_field" in raw)
    assert b'"$amplitude_new_field":{"x":1.10,"y":1e19}' in props_1
    assert b'"$geoip_latitude":"1e400"' in props_1  # kept aside, put back by the target
    assert b'"$geoip_longitude":-0.0' in props_1

    # target-jsonl (singer-python reads numbers as Decimal) keeps every value and its digits;
    # it writes exponents in Decimal's spelling (1E+19), the same number.
    rows = jsonl_rows(run.stdout, tmp_path)
    row_0 = json.loads(rows[0], parse_float=Decimal)["event_properties"]
    expected = {
        "a": Decimal("1.10"),
        "b": Decimal("1E+2"),
        "c": "1e400",
        "d": Decimal("-0.0"),
        "e": Decimal("1e19"),
        "f": Decimal("12.345678901234567890123"),
        "g": "-1e400",
        "h": [Decimal("1.10"), Decimal("2.50e-3")],
        "i": "1e-400",
        "j": 123456789012345678901234567890,
        "k": Decimal("47.400309"),
    }
    # Decimal's str shows its digits (1.10 is not 1.1), which == alone would not compare.
    assert {k: str(v) for k, v in row_0.items()} == {k: str(v) for k, v in expected.items()}
    assert b'"a": 1.10, "b": 1E+2, "c": "1e400", "d": -0.0, "e": 1E+19' in rows[0]


@pytest.mark.parametrize(
    ("spelled", "text"),
    [
        (b"4242424242", "4242424242"),
        (b"4242424242.0", "4242424242"),
        (b"4.242424242e9", "4242424242"),
        (b"42424242420e-1", "4242424242"),
        (b"1e20", "100000000000000000000"),
        (b"1E+400", "1" + "0" * 400),  # beyond a double: its exact value all the same
        (b"123456789012345678901234567890", "123456789012345678901234567890"),
        (b"12.50", "12.50"),  # not whole: its exported text, never rounded or respelled
        (b"1.5e-3", "1.5e-3"),
    ],
)
def test_an_id_given_as_a_number_has_one_string_form_whatever_its_spelling(
    spelled: bytes,
    text: str,
    run_tap: Callable[..., TapRun],
    tmp_path: Path,
    posthog: PostHogStandIn,
) -> None:
    run = local_run(run_tap, tmp_path, [line(2, b'"user_id":' + spelled)])
    (event,) = events(run)
    assert event["user_id"] == text
    # As exported: the number's text (beyond a double, the string of it: see NUMBERS_OUT).
    kept = b'"%s"' % spelled if math.isinf(float(spelled)) else spelled
    assert b'"as_exported":{"user_id":' + kept + b"}" in record_lines(run)[0]
    (sent,) = posthog_payloads(run.stdout, tmp_path, posthog)
    # An id PostHog would cut to 200 characters is sent in its hashed form (capture_ids.py).
    assert orjson.loads(sent)["distinct_id"] == (text if len(text) <= 183 else hashed_id(text))


# --- times ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exported", "utc", "cut"),
    [
        ("2024-03-01T07:10:00+02:00", "2024-03-01T05:10:00.000000+00:00", False),
        ("2024-03-01T05:10:00Z", "2024-03-01T05:10:00.000000+00:00", False),
        ("2024-03-01T00:40:00.25-04:30", "2024-03-01T05:10:00.250000+00:00", False),
        ("2024-03-01 05:10:00.123456789", "2024-03-01T05:10:00.123456+00:00", True),
        ("2024-03-01T06:10:00.999999999+01:00", "2024-03-01T05:10:00.999999+00:00", True),
    ],
)
def test_times_become_utc_exactly_and_digits_below_a_microsecond_are_said(
    exported: str,
    utc: str,
    cut: bool,
    run_tap: Callable[..., TapRun],
    tmp_path: Path,
    posthog: PostHogStandIn,
) -> None:
    fields = f'"client_event_time":"{exported}","server_received_time":"{exported}"'.encode()
    run = local_run(run_tap, tmp_path, [line(3, fields)])
    (event,) = events(run)
    assert event["client_event_time"] == event["server_received_time"] == utc
    assert event["additional_properties"]["as_exported"] == {
        "client_event_time": exported,
        "server_received_time": exported,
    }
    outcome = "converted, digits below a microsecond cut" if cut else "converted"
    fitted = next(text for text in run.stderr.splitlines() if "Types fitted" in text)
    assert f"client_event_time: 1 string {outcome} to date-time" in fitted
    assert run.bookmark == "2024-03-01T06:00:00+00:00"
    (sent,) = posthog_payloads(run.stdout, tmp_path, posthog)
    properties = orjson.loads(sent)["properties"]
    assert properties["$amplitude_client_event_time"] == utc
    assert properties["$amplitude_as_exported"]["server_received_time"] == exported


def test_server_upload_time_with_an_offset_is_utc_and_the_bookmark_the_members_hour(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    # Uploaded 05:10 UTC, spelled in +09:00: the member's hour (5) is what bookmarks.
    exported = line(4, b'"x":1').replace(
        b'"server_upload_time":"2024-03-01 05:10:01.000000"',
        b'"server_upload_time":"2024-03-01T14:10:01+09:00"',
    )
    run = local_run(run_tap, tmp_path, [exported])
    (event,) = events(run)
    assert event["server_upload_time"] == "2024-03-01T05:10:01.000000+00:00"
    assert run.bookmark == "2024-03-01T06:00:00+00:00"
    assert all(
        state["bookmarks"]["events"]["replication_key_value"].endswith("+00:00")
        for state in run.states
        if "events" in state.get("bookmarks", {})
    )


def test_an_unreadable_event_time_is_kept_as_exported_and_a_dead_letter_holds_the_export(
    run_tap: Callable[..., TapRun], tmp_path: Path, posthog: PostHogStandIn
) -> None:
    fallback = line(5, b'"client_event_time":"2024-03-01 05:09:58.000000"').replace(
        b'"event_time":"2024-03-01 05:10:00.000000"', b'"event_time":"2024:03:01 05:10:00"'
    )
    # No time at all: dead-lettered, its fields as exported.
    dead = (
        b'{"uuid":"6f1d5a36-0c1b-4d7e-9a8f-2b3c4d5e6f76","event_type":"Paid",'
        b'"event_time":"soon","server_upload_time":"2024-03-01 05:10:01.000000",'
        b'"client_upload_time":"2024-03-01T07:10:01+02:00","paying":"maybe","user_id":1e20,'
        b'"amount":1.10}'
    )
    run = local_run(run_tap, tmp_path, [fallback, dead])
    config = target_config(tmp_path, posthog)
    process = start_target(config, tmp_path)
    posthog.keep_raw_events = lambda raw: True
    _, stderr = process.communicate(run.stdout.encode(), timeout=120)
    assert process.returncode == 0, stderr.decode()[-3000:]
    (sent,) = [orjson.loads(raw) for raw in posthog.raw_events if b'"Paid"' in raw]
    assert sent["timestamp"] == "2024-03-01T05:09:58.000000+00:00"
    assert sent["properties"]["$amplitude_timestamp_from"] == "client_event_time"
    assert sent["properties"]["$amplitude_event_time"] == "2024:03:01 05:10:00"
    letters = Path(config["dead_letter_path"]).read_bytes().splitlines()
    (letter,) = letters
    assert json.loads(letter, parse_float=Decimal)["record"] == json.loads(
        dead, parse_float=Decimal
    )
    assert b'"amount":1.10' in letter and b'"user_id":1e20' in letter


# --- keys ----------------------------------------------------------------------------------


def test_export_fields_named_like_the_taps_own_cannot_forge_them(
    run_tap: Callable[..., TapRun], tmp_path: Path, posthog: PostHogStandIn
) -> None:
    forged = line(
        7,
        b'"uuid_derived":true,"uuid_original":"x","repairs":["none"],'
        b'"additional_properties":{"paying":"yes"},"reserved_names":1,"as_exported":2,'
        b'"duplicate_keys":3',
    )
    run = local_run(run_tap, tmp_path, [forged])
    (event,) = events(run)
    assert "uuid_derived" not in event and "uuid_original" not in event
    assert event["repairs"] == [
        "export fields named like the tap's own kept in additional_properties.reserved_names"
    ]
    assert event["additional_properties"] == {
        "reserved_names": {
            "uuid_derived": True,
            "uuid_original": "x",
            "repairs": ["none"],
            "additional_properties": {"paying": "yes"},
            "reserved_names": 1,
            "as_exported": 2,
            "duplicate_keys": 3,
        }
    }
    (sent,) = posthog_payloads(run.stdout, tmp_path, posthog)
    properties = orjson.loads(sent)["properties"]
    assert "$amplitude_uuid_derived" not in properties
    assert "$amplitude_uuid_original" not in properties
    assert properties["$amplitude_reserved_names"]["uuid_derived"] is True


def test_a_key_given_twice_keeps_the_last_value_and_the_earlier_ones_aside(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    twice = line(
        8,
        b'"user_id":"first","user_id":"second",'
        b'"event_properties":{"a":1,"a":2.50,"a":3,"n":{"b":[1],"b":{"c":0}},"x/y":1,"x/y":2}',
    )
    run = local_run(run_tap, tmp_path, [twice, line(9, b'"x":"a\\":b"')])
    first, clean = events(run)
    assert first["user_id"] == "second"
    assert first["event_properties"] == {"a": 3, "n": {"b": {"c": 0}}, "x/y": 2}
    assert first["additional_properties"]["duplicate_keys"] == {
        "/user_id": ["first"],
        "/event_properties/a": [1, 2.5],
        "/event_properties/n/b": [[1]],
        "/event_properties/x~1y": [1],
    }
    assert b'"/event_properties/a":[1,2.50]' in record_lines(run)[0]
    assert first["repairs"] == [
        "key repeated in one object: the last value kept, earlier ones in "
        "additional_properties.duplicate_keys"
    ]
    assert "repairs" not in clean and "duplicate_keys" not in clean["additional_properties"]
    fitted = next(text for text in run.stderr.splitlines() if "Types fitted" in text)
    assert "1 lines with a key given twice, earlier values in additional_properties" in fitted
    assert f"{MEMBER}, line 1: a key given twice in one object (/event_properties/a" in run.stderr


def test_a_line_nested_too_deep_to_read_is_set_aside_and_the_run_goes_on(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    deep = b'{"a":' + b"[" * 1000 + b"]" * 1000 + b"}"
    run = local_run(run_tap, tmp_path, [deep, line(0, b'"x":1')])
    assert len(events(run)) == 1
    (kept,) = [
        m["record"]
        for m in run.messages
        if m["type"] == "RECORD" and m["stream"] == "unreadable_lines"
    ]
    assert kept["line_number"] == 1 and kept["reason"].startswith("nested too deep: more than 200")


# --- one reading of a time in both plugins ---------------------------------------------------

TIMES = [
    "2024-03-01 05:10:00.123456",  # Amplitude's own
    "2024-03-01 05:10:00",
    "2024-03-01T05:10:00.123456+00:00",  # the tap's
    "2024-03-01T07:10:00+02:00",
    "2024-03-01T05:10:00Z",
    "2024-03-01t05:10:00z",
    "2024-03-01T05:10:00,5",
    "2024-03-01T05:10:00.123456789",
    "2024-03-01T05:10:00.1+0130",
    "2024-03-01 05:10:00.00000Z",  # the length of Amplitude's form, not its shape
    "2024-03-01T05:10:00.000000+00:00x",
    "2024-03-01",  # a date alone: no instant
    "2024-03-01T05",
    "2024-03-01T05:10",
    "20240301T051000",
    "2024-W09-5T05:10:00",
    "2024-W09-5 05:10:00.123456",
    "2024-03-01 05:10+01",
    "2024-03-01T05:10:00+24:00",
    "2024-02-30 05:10:00.000000",
    "2024:03:01 05:10:00.000000",
    "2024-03-01T23:59:60Z",  # a leap second: no datetime holds it
    "0001-01-01T00:30:00+01:00",  # before year 1 once the offset is applied
    "9999-12-31T23:59:59-01:00",  # after year 9999
    " 2024-03-01 05:10:00.000000",
    "2024-03-01 05:10:00.123456\n",
    "\uff12\uff10\uff12\uff14-03-01 05:10:00.000000",  # digits that are not ASCII
    "yesterday",
    "",
]


@pytest.mark.parametrize("exported", TIMES)
def test_both_plugins_read_a_time_alike(exported: str) -> None:
    """The tap's record and target-posthog's event agree on every event_time: the same
    timestamp, or both say it is no time (the tap keeps it aside, the target falls back to
    client_event_time and keeps it as `$amplitude_event_time`)."""
    from tap_amplitude.conform import Conformer
    from tap_amplitude.lines import parse_line
    from tap_amplitude.schema import EVENTS_SCHEMA
    from tap_amplitude.times import normalise_record
    from target_posthog.event_keys import parse_time
    from target_posthog.extras import with_extra_fields
    from target_posthog.mapping import map_record

    raw = line(1, b'"user_id":"u","client_event_time":"2024-02-01 00:00:00.000000"')
    raw = raw.replace(b"2024-03-01 05:10:00.000000", json.dumps(exported).encode()[1:-1])
    tapped = Conformer(EVENTS_SCHEMA)(normalise_record(parse_line(raw)), raw)
    event = map_record(with_extra_fields(tapped)).events[0]
    properties = event["properties"]
    if tapped["event_time"] is None:
        assert tapped["additional_properties"]["event_time"] == exported
        assert parse_time(exported) is None
        assert event["timestamp"] == "2024-02-01T00:00:00.000000+00:00"
        assert properties["$amplitude_timestamp_from"] == "client_event_time"
        assert properties["$amplitude_event_time"] == exported
    else:
        assert event["timestamp"] == tapped["event_time"] == parse_time(exported)
        assert "$amplitude_timestamp_from" not in properties
        if tapped["event_time"] != exported:  # converted: the export's text kept aside
            as_exported = tapped.get("additional_properties", {}).get("as_exported", {})
            assert as_exported.get("event_time", exported) == exported


# --- derived uuids: one per line as exported -----------------------------------------------


def test_lines_that_differ_only_in_repaired_bytes_stay_two_events_in_posthog(
    run_tap: Callable[..., TapRun], tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """No uuid and no $insert_id: the uuid is derived. A repair makes each pair below one
    record (U+FFFD for two different lone surrogates or two different bytes that are not
    UTF-8; the last value of a key given twice), yet the lines are two events; an identical
    line (an event exported twice) is one."""
    head = b'{"event_type":"Paid","event_time":"2024-03-01 05:10:00.000000","device_id":"d1",'
    pairs = [
        (b'"event_properties":{"t":"a\\ud800"}}', b'"event_properties":{"t":"a\\ud801"}}'),
        (b'"event_properties":{"t":"a\xff"}}', b'"event_properties":{"t":"a\xfe"}}'),
        (b'"event_properties":{"n":1,"n":2}}', b'"event_properties":{"n":2}}'),
    ]
    lines = [head + tail for pair in pairs for tail in pair]
    run = local_run(run_tap, tmp_path, [*lines, lines[0]])
    tapped = events(run)
    assert len(tapped) == 7 and all(record["uuid_derived"] for record in tapped)
    assert len({record["uuid"] for record in tapped}) == 6  # the repeated line: one uuid
    for first, second in zip(tapped[0:6:2], tapped[1:6:2], strict=True):
        assert first["event_properties"] == second["event_properties"]  # one record, repaired
    posthog_payloads(run.stdout, tmp_path, posthog)
    kept = [event for event in posthog.unique_events() if event["event"] == "Paid"]
    assert sorted(event["uuid"] for event in kept) == sorted({r["uuid"] for r in tapped})
