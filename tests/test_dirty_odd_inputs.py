"""Odd lines a new user met that crashed the tap, were set aside for a wrong cause or changed
without a word (issue 11, issue 15): records nested deeper than any Singer writer takes,
integers wider than Python reads, numbers kept aside, raw control characters, placeholder
uuids, time_extracted. Each is emitted exactly, repaired visibly, or set aside byte for byte,
named and counted; none stops the run, none crashes it. (Odd files: test_dirty_odd_files.py.)
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from tap_amplitude.exactjson import REPAIR_WIDE_INTEGER
from tap_amplitude.lines import REPAIR_CONTROL, REPAIR_NUL, TOO_DEEP
from target_posthog.event_keys import record_uuid

from tests.conftest import TapRun
from tests.test_dirty_lines import log_text
from tests.test_dirty_tap import GOOD, MEMBER, good_line, local_run, stream_records

pytestmark = pytest.mark.timeout(180)

WINDOW = "window 2024-03-01T05:00Z (1 h)"


def done_line(run: TapRun) -> str:
    (done,) = [line for line in log_text(run.stderr) if line.startswith("Done:")]
    return done


def nested(levels: int, kind: str) -> bytes:
    """A JSON value of ``levels`` nested arrays or objects around 1."""
    opening, closing = (b'{"a":', b"}") if kind == "object" else (b"[", b"]")
    return opening * levels + b"1" + closing * levels


def test_a_record_nested_deeper_than_200_levels_is_set_aside_and_shallower_ones_are_emitted(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """orjson, which writes Singer messages, stops at 254 levels (a 254-deep record crashed the
    tap with "Recursion limit reached"); 1000 levels exceeded the JSON readers' recursion."""
    lines, expected = [], {}
    for levels in (100, 199, 200, 201, 254, 300, 1000, 100_000):
        for kind in ("object", "array"):
            # The line's own object is level 1, event_properties level 2.
            value = nested(levels - 2, kind)
            line = (
                b'{"uuid":"' + str(uuid.uuid4()).encode() + b'","event_type":"Deep",'
                b'"event_properties":{"v":' + value + b"}}"
            )
            lines.append(line)
            expected[len(lines)] = (levels, line)
    lines.append(b"[" * 100_000)  # not even JSON: never read with recursion
    expected[len(lines)] = (100_001, lines[-1])
    # Brackets inside a string nest nothing (an escaped quote does not end the string).
    in_text = (
        b'{"uuid":"'
        + str(uuid.uuid4()).encode()
        + b'","event_properties":{"t":"\\"'
        + b"[{" * 500
        + b'"}}'
    )
    lines.append(in_text)
    expected[len(lines)] = (1, in_text)
    run = local_run(run_tap, tmp_path, [*lines, good_line(0)])
    assert run.returncode == 0, run.stderr[-3000:]
    events = stream_records(run, "events")
    emitted = {event["uuid"]: event for event in events}
    set_aside = {r["line_number"]: r for r in stream_records(run, "unreadable_lines")}
    for line_number, (levels, line) in expected.items():
        if levels <= 200:
            exported = json.loads(line)
            assert emitted[exported["uuid"]]["event_properties"] == exported["event_properties"]
            assert line_number not in set_aside
        else:
            record = set_aside[line_number]
            assert base64.b64decode(record["line_base64"]) == line
            assert record["reason"] == TOO_DEEP
            assert record["hour"] == "2024-03-01T05:00:00+00:00"
    assert len(events) == 8  # 100, 199, 200 levels as objects and arrays, in_text, good_line
    assert run.bookmark == "2024-03-01T06:00:00+00:00"
    assert (
        "11 lines set aside as unreadable (11 nested too deep; stream unreadable_lines)"
        in done_line(run)
    )
    path = tmp_path / "export" / MEMBER
    assert f"{WINDOW}, member {path}, line 8: set aside as unreadable ({TOO_DEEP})" in log_text(
        run.stderr
    )
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    "digits",
    [b"1" * 4301, b"-" + b"7" * 5000, b"1" + b"0" * 5000],
    ids=["4301-digits", "negative-5000", "trailing-zeros"],
)
def test_an_integer_wider_than_python_reads_is_kept_as_its_exact_text(
    digits: bytes, run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """It was set aside as "not JSON: Exceeds the limit (4300 digits) ...": it is JSON."""
    line = (
        b'{"uuid":"6f1d5a36-0c1b-4d7e-9a8f-2b3c4d5e6f73","event_type":"Paid",'
        b'"event_properties":{"order_id":' + digits + b',"ok":' + b"9" * 300 + b"}}"
    )
    run = local_run(run_tap, tmp_path, [line])
    assert run.returncode == 0, run.stderr[-3000:]
    (event,) = stream_records(run, "events")
    assert event["event_properties"]["order_id"] == digits.decode()  # a string of its text
    record_line = next(r for r in run.stdout.encode().splitlines() if b'"type":"RECORD"' in r)
    assert b'"ok":' + b"9" * 300 + b"}" in record_line  # a narrower one: still a number
    assert event["repairs"] == [REPAIR_WIDE_INTEGER]
    assert stream_records(run, "unreadable_lines") == []
    assert f"1 lines repaired (1 {REPAIR_WIDE_INTEGER})" in done_line(run)


@pytest.mark.parametrize(
    "placeholder",
    [
        "00000000-0000-0000-0000-000000000000",
        "00000000000000000000000000000000",
        "{00000000-0000-0000-0000-000000000000}",
        "urn:uuid:00000000-0000-0000-0000-000000000000",
        "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
        " 00000000-0000-0000-0000-000000000000 ",
    ],
)
def test_a_placeholder_uuid_counts_as_absent_and_the_derived_one_is_marked(
    placeholder: str, run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """PostHog would dedupe every event of a day with the all-zero uuid into one."""
    exported: list[dict[str, Any]] = [
        GOOD | {"uuid": placeholder, "$insert_id": f"ins-{n}", "device_id": "d"} for n in (1, 2)
    ]
    run = local_run(run_tap, tmp_path, [orjson.dumps(record) for record in exported])
    assert run.returncode == 0, run.stderr
    events = stream_records(run, "events")
    assert [e["uuid"] for e in events] == [record_uuid(record) for record in exported]
    assert len({e["uuid"] for e in events}) == 2
    assert placeholder not in {record_uuid(record) for record in exported}
    for event in events:
        assert event["uuid_derived"] is True and event["uuid_original"] == placeholder
        assert uuid.UUID(event["uuid"]).version == 5
    assert "2 uuids derived" in done_line(run)


def test_no_record_of_either_stream_carries_time_extracted(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """unreadable_lines RECORDs had it (the SDK's path), events' did not (README: omitted)."""
    run = local_run(run_tap, tmp_path, [good_line(0), b"null"])
    records = [m for m in run.messages if m["type"] == "RECORD"]
    assert {m["stream"] for m in records} == {"events", "unreadable_lines"}
    assert all(set(m) == {"type", "stream", "record"} for m in records), records


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("session_id", b"1.0e19", "a whole number beyond 64 bits"),  # was "does not convert"
        ("event_id", b"1" + b"0" * 5000, "a whole number beyond 64 bits"),
        ("app", b"1.500000", "a number that does not convert exactly to an integer"),
        ("location_lat", b"1e400", "a number beyond a double's range"),
    ],
)
def test_a_number_kept_aside_is_said_with_its_true_cause(
    field: str, value: bytes, said: str, run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    line = b'{"uuid":"6f1d5a36-0c1b-4d7e-9a8f-2b3c4d5e6f73","' + field.encode() + b'":' + value
    run = local_run(run_tap, tmp_path, [line + b"}"])
    assert run.returncode == 0, run.stderr[-3000:]
    (event,) = stream_records(run, "events")
    assert event[field] is None
    path = tmp_path / "export" / MEMBER
    assert (
        f"{WINDOW}, member {path}, line 1: {field}: {said}; kept as exported in "
        f"additional_properties.{field}, the field is null (first of its kind; counts at the end "
        "of the run)"
    ) in log_text(run.stderr)


def test_an_array_holding_a_wide_integer_in_a_string_field_keeps_the_lines_text(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """Its text was written again with the integer quoted: the line's text is the value."""
    wide = b"3" * 5000
    line = b'{"uuid":"6f1d5a36-0c1b-4d7e-9a8f-2b3c4d5e6f73","user_id":[' + wide + b", 1.50]}"
    (event,) = stream_records(local_run(run_tap, tmp_path, [line]), "events")
    assert event["user_id"] == f"[{wide.decode()}, 1.50]"


def test_a_control_character_written_raw_inside_a_string_is_read_as_itself_and_named(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """Such a line was set aside as 'not JSON: Invalid control character'; its meaning is
    clear (Python's json reads it with strict=False), so it is a repair, written escaped."""
    line = (
        b'{"uuid":"6f1d5a36-0c1b-4d7e-9a8f-2b3c4d5e6f73","user_id":"u\x01",'
        b'"event_properties":{"text":"a\tb\x00c\x1bd"}}'
    )
    run = local_run(run_tap, tmp_path, [line])
    assert run.returncode == 0, run.stderr[-3000:]
    (event,) = stream_records(run, "events")
    assert event["event_properties"] == {"text": "a\tb\ufffdc\x1bd"}  # NUL: texts.py
    assert event["user_id"] == "u\x01"
    assert event["repairs"] == [REPAIR_CONTROL, REPAIR_NUL]
    record_line = next(r for r in run.stdout.splitlines() if r.startswith('{"type":"RECORD"'))
    assert '"text":"a\\tb\ufffdc\\u001bd"' in record_line  # valid JSON again
    assert stream_records(run, "unreadable_lines") == []


def test_a_uuid_in_another_spelling_is_written_canonical_with_its_exported_text_kept(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """The tap kept `{...}` as the Singer key while target-posthog sent PostHog the canonical
    form: one event, two keys. Now both say the canonical form."""
    spellings = [
        "{56780000-0000-4000-8000-0000000000AA}",
        "56780000-0000-4000-8000-0000000000AB",
        "urn:uuid:56780000-0000-4000-8000-0000000000ac",
        "567800000000400080000000000000ad",
    ]
    lines = [orjson.dumps(GOOD | {"uuid": spelled, "n": n}) for n, spelled in enumerate(spellings)]
    run = local_run(run_tap, tmp_path, [*lines, good_line(9)])
    assert run.returncode == 0, run.stderr[-3000:]
    *events, plain = stream_records(run, "events")
    for event, spelled in zip(events, spellings, strict=True):
        canonical = str(uuid.UUID(spelled))
        assert event["uuid"] == canonical
        assert event["uuid_original"] == spelled
        assert "uuid_derived" not in event and "repairs" not in event
        assert record_uuid(event) == canonical  # target-posthog's key for it
    assert "uuid_original" not in plain
    assert "0 uuids derived" in done_line(run)
