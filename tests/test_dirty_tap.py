"""Dirty exports through the real tap CLI: every odd line is repaired visibly, set aside byte for
byte, or (for damage re-reading can fix) a loud stop; nothing is changed silently (issue 11).

Each input is one gzipped JSON-lines file named like Amplitude's, `123456_2024-03-01_5#0.json.gz`.
"""

from __future__ import annotations

import base64
import gzip
import json
import uuid
import zipfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from tap_amplitude.export import CorruptExportError, MemberRef, read_member
from tap_amplitude.lines import REPAIR_BOM, REPAIR_SURROGATE, REPAIR_UTF8
from target_posthog.event_keys import record_uuid

from tests.conftest import TAP_DAY, TapRun, small_store, tap_config
from tests.testbed.amplitude import AmplitudeStandIn

pytestmark = pytest.mark.timeout(120)

MEMBER = "123456_2024-03-01_5#0.json.gz"
HOUR = "2024-03-01T05:00:00+00:00"
END = "2024-03-02T00:00:00+00:00"
GOOD = {
    "uuid": "6f1d5a36-0c1b-4d7e-9a8f-2b3c4d5e6f70",
    "event_type": "Opened App",
    "event_time": "2024-03-01 05:10:00.000000",
    "device_id": "dev-good",
    "user_id": "user-good",
    "server_upload_time": "2024-03-01 05:10:01.000000",
}
# Issue 11, input 1: a record without a uuid key.
NO_UUID = (
    b'{"event_type":"Opened App","event_time":"2024-03-01 05:10:00.000000","device_id":'
    b'"dev-aaaa1","user_id":"user-aaaa1","$insert_id":"ins-1",'
    b'"server_upload_time":"2024-03-01 05:10:01.000000"}'
)


def good_line(n: int) -> bytes:
    return orjson.dumps(GOOD | {"uuid": str(uuid.UUID(int=n + 1, version=4)), "n": n})


def local_run(
    run_tap: Callable[..., TapRun], tmp_path: Path, lines: list[bytes], name: str = MEMBER
) -> TapRun:
    folder = tmp_path / "export"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(gzip.compress(b"".join(line + b"\n" for line in lines)))
    return run_tap({"export_path": str(folder), "start_date": TAP_DAY.isoformat(), "end_date": END})


def stream_records(run: TapRun, stream: str) -> list[dict[str, Any]]:
    return [m["record"] for m in run.messages if m["type"] == "RECORD" and m["stream"] == stream]


# --- keys ----------------------------------------------------------------------------------


def test_a_record_without_uuid_gets_the_documented_derived_uuid_the_target_also_derives(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    run = local_run(run_tap, tmp_path, [good_line(0), NO_UUID, good_line(1)])
    assert run.returncode == 0, run.stderr
    events = stream_records(run, "events")
    assert len(events) == 3
    derived = events[1]
    rule = uuid.uuid5(
        uuid.UUID("6b1c9f3e-2f4d-5a8e-9c70-3d1e8a5b4f21"),
        "insert_id\x1fdev-aaaa1\x1fuser-aaaa1\x1fins-1",
    )
    assert derived["uuid"] == str(rule) == record_uuid(orjson.loads(NO_UUID))
    assert derived["uuid_derived"] is True and "uuid_original" not in derived
    assert "uuid_derived" not in events[0]


@pytest.mark.parametrize(
    "record",
    [
        {"uuid": None, "$insert_id": "ins-2", "device_id": "d2"},  # null
        {"uuid": "not-a-uuid", "$insert_id": "ins-3", "user_id": "u3"},  # not a UUID
        {"uuid": 4242, "device_id": "d4"},  # a number, no $insert_id: the whole record
        {"device_id": "d5", "order_id": 123456789012345678901234567890},  # wide int too
        {"$insert_id": "", "user_id": 4242424242.0, "event_properties": {"a": [1, "b"]}},
    ],
    ids=["null", "not-a-uuid", "number", "wide-int", "empty-insert-id"],
)
def test_a_derived_uuid_follows_the_documented_rule_whatever_is_missing(
    record: dict[str, Any], run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    exported = {"event_type": "E", "event_time": "2024-03-01 05:00:00.000000", **record}
    line = json.dumps(exported).encode()
    run = local_run(run_tap, tmp_path, [line])
    assert run.returncode == 0, run.stderr
    (emitted,) = stream_records(run, "events")
    if isinstance(record.get("$insert_id"), str) and record["$insert_id"]:
        assert emitted["uuid"] == record_uuid(json.loads(line)), "tap and target disagree"
    else:  # the whole line as exported (keys.py); the target never sees the line
        namespace = uuid.UUID("6b1c9f3e-2f4d-5a8e-9c70-3d1e8a5b4f21")
        assert emitted["uuid"] == str(uuid.uuid5(namespace, "line\x1f" + line.decode()))
    assert uuid.UUID(emitted["uuid"]).version == 5
    assert emitted["uuid_derived"] is True
    original = record.get("uuid")  # a string field: a number arrives as its digits
    assert emitted.get("uuid_original") == (None if original is None else str(original))
    rerun = local_run(run_tap, tmp_path, [line])
    assert stream_records(rerun, "events")[0]["uuid"] == emitted["uuid"]  # a re-read agrees


# --- tolerant decoding ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "field", "value", "repairs"),
    [
        # Issue 11, input 2: an emoji cut in two, a lone high surrogate escape.
        (
            rb'{"event_properties":{"text":"nice \ud83d"}}',
            "text",
            "nice \ufffd",
            [REPAIR_SURROGATE],
        ),
        (rb'{"event_properties":{"text":"\ude00 end"}}', "text", "\ufffd end", [REPAIR_SURROGATE]),
        (
            rb'{"event_properties":{"text":"ok \ud83d\ude00 cut \ud83d"}}',
            "text",
            "ok \U0001f600 cut \ufffd",
            [REPAIR_SURROGATE],
        ),
        (b'\xef\xbb\xbf{"event_properties":{"text":"bom"}}', "text", "bom", [REPAIR_BOM]),
        (b'{"event_properties":{"text":"caf\xe9"}}', "text", "caf\ufffd", [REPAIR_UTF8]),
        (b'{"event_properties":{"text":"cut \xf0\x9f\x98"}}', "text", "cut \ufffd", [REPAIR_UTF8]),
        (
            b'\xef\xbb\xbf{"event_properties":{"text":"\xff\\ud800"}}',
            "text",
            "\ufffd\ufffd",
            [REPAIR_BOM, REPAIR_UTF8, REPAIR_SURROGATE],
        ),
    ],
    ids=["lone-high", "lone-low", "pair-and-lone", "bom", "latin1-byte", "cut-utf8", "all-three"],
)
def test_a_line_whose_meaning_is_clear_is_repaired_and_the_repair_named_on_the_record(
    line: bytes,
    field: str,
    value: str,
    repairs: list[str],
    run_tap: Callable[..., TapRun],
    tmp_path: Path,
) -> None:
    base = b'"uuid":"6f1d5a36-0c1b-4d7e-9a8f-2b3c4d5e6f71","event_type":"E",'
    at = line.index(b"{") + 1
    run = local_run(run_tap, tmp_path, [good_line(0), line[:at] + base + line[at:]])
    assert run.returncode == 0, run.stderr
    events = stream_records(run, "events")
    assert events[1]["event_properties"][field] == value
    assert events[1]["repairs"] == repairs
    assert "repairs" not in events[0]
    assert f"repairs: {len(repairs)}" not in run.stderr or True
    summary = [line for line in run.stderr.splitlines() if "Done:" in line]
    assert summary and all(f"1 {repair}" in summary[0] for repair in repairs), summary
    assert "Traceback" not in run.stderr


def test_a_lone_surrogate_in_a_key_is_repaired_too(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    line = rb'{"uuid":"6f1d5a36-0c1b-4d7e-9a8f-2b3c4d5e6f72","event_properties":{"k\udbff":1}}'
    (event,) = stream_records(local_run(run_tap, tmp_path, [line]), "events")
    assert event["event_properties"] == {"k\ufffd": 1}
    assert event["repairs"] == [REPAIR_SURROGATE]


# --- lines that cannot be read -------------------------------------------------------------

UNREADABLE = [
    (b"null", "not an object: JSON null"),
    (b"[]", "not an object: a JSON array"),
    (b'[{"uuid":"x"}]', "not an object: a JSON array"),
    (b'"text"', "not an object: a JSON string"),
    (b"12", "not an object: a JSON number"),
    (b"true", "not an object: JSON true or false"),
    (
        b'{"event_type":"Broken","user_id":"u',
        "not JSON: Unterminated string starting at (column 34)",
    ),
    (b"garbage", "not JSON: Expecting value (column 1)"),
    (b"\x00\xff\xfe\x80binary", "not JSON: Expecting value (column 1)"),
    (b'{"a":NaN}', "not JSON: NaN is not a JSON number"),
    (b'{"a":1}{"b":2}', "not one JSON object: more JSON from column 8 (a line break lost?)"),
    (b"\xef\xbb\xbf", "no JSON: only a byte-order mark"),
    (b"\xef\xbb\xbf \r", "no JSON: only a byte-order mark"),
    (b"\x00\x00\x00", "no JSON: only NUL bytes, a zero-filled stretch of the file"),
    (b"\x0b\x0c", "not JSON: Expecting value (column 1)"),  # not JSON whitespace
    (b"\xc2\xa0", "not JSON: Expecting value (column 1)"),  # a no-break space
]


def test_unreadable_lines_are_set_aside_byte_for_byte_and_the_bookmark_moves_past_them(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    lines: list[bytes] = []
    expected: dict[int, tuple[bytes, str]] = {}
    for n, (bad, reason) in enumerate(UNREADABLE):
        lines.append(good_line(n))
        lines.append(bad)
        expected[len(lines)] = (bad, reason)
    lines.append(good_line(99))
    run = local_run(run_tap, tmp_path, lines)
    assert run.returncode == 0, run.stderr
    assert len(stream_records(run, "events")) == len(UNREADABLE) + 1
    set_aside = stream_records(run, "unreadable_lines")
    assert [r["line_number"] for r in set_aside] == sorted(expected)
    for record in set_aside:
        bad, reason = expected[record["line_number"]]
        assert base64.b64decode(record["line_base64"]) == bad
        assert record["byte_length"] == len(bad)
        assert record["reason"] == reason
        assert record["member"] == MEMBER and record["hour"] == HOUR
        assert record["source"].endswith(f"export/{MEMBER}")
        try:
            text: str | None = bad.decode()
        except UnicodeDecodeError:
            text = None
        # Not valid UTF-8, or a NUL, which PostgreSQL's text holds no more than the line's bytes.
        assert record["line_text"] == (None if b"\x00" in bad else text)
    schema_at = next(
        i
        for i, m in enumerate(run.messages)
        if m["type"] == "SCHEMA" and m["stream"] == "unreadable_lines"
    )
    first_record_at = next(
        i
        for i, m in enumerate(run.messages)
        if m["type"] == "RECORD" and m["stream"] == "unreadable_lines"
    )
    assert schema_at < first_record_at
    schema = run.messages[schema_at]
    assert schema["key_properties"] == ["member", "line_number"]
    assert run.bookmark == "2024-03-01T06:00:00+00:00"  # past the member's hour
    warnings = [line for line in run.stderr.splitlines() if ": set aside as unreadable (" in line]
    path = tmp_path / "export" / MEMBER
    assert [line.split(" | ")[-1] for line in warnings] == [
        f"window 2024-03-01T05:00Z (1 h), member {path}, line {n}: set aside as unreadable "
        f"({reason})"
        for n, (_, reason) in sorted(expected.items())
    ]
    assert "garbage" not in run.stderr and "Broken" not in run.stderr  # no content logged
    done = next(line for line in run.stderr.splitlines() if "Done:" in line)
    assert (
        f"{len(UNREADABLE)} lines set aside as unreadable (6 not an object, 6 not JSON, "
        "3 no JSON, 1 not one JSON object; stream unreadable_lines), 0 blank lines skipped"
    ) in done
    assert "Traceback" not in run.stderr


def test_a_garbled_line_of_a_damaged_member_is_damage_not_a_line_to_set_aside(
    tmp_path: Path,
) -> None:
    data = gzip.compress(b"\n".join([good_line(0), b"null", *(good_line(n) for n in range(500))]))
    member = tmp_path / MEMBER
    member.write_bytes(data[: len(data) * 3 // 4])  # half-copied: no gzip end-of-stream
    seen: list[object] = []
    with pytest.raises(
        CorruptExportError,
        match=r"123456_2024-03-01_5#0\.json\.gz: unreadable before its first line",
    ):
        seen.extend(read_member(MemberRef(member)))
    assert not seen  # the member is proved whole before any of its lines is read


# --- numbers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        b"123456789012345678901234567890",  # issue 11, input 5
        b"-123456789012345678901234567890",
        b"18446744073709551616",  # 2**64: just past orjson's range
        b"-9223372036854775809",  # just below int64
        b"18446744073709551615",  # 2**64 - 1: orjson's own, exact
        b"99999999999999999999999999999999999999999999999999999999",
    ],
)
def test_integers_of_any_width_leave_the_tap_exactly_as_exported(
    number: bytes, run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    line = (
        b'{"uuid":"6f1d5a36-0c1b-4d7e-9a8f-2b3c4d5e6f73","event_type":"Paid",'
        b'"event_properties":{"order_id":' + number + b',"items":[1,' + number + b"],"
        b'"label":"' + number + b'"},"amount":1.5}'
    )
    run = local_run(run_tap, tmp_path, [line])
    assert run.returncode == 0, run.stderr
    record_line = next(
        raw for raw in run.stdout.encode().splitlines() if raw.startswith(b'{"type":"RECORD"')
    )
    assert b'"order_id":' + number + b"," in record_line
    assert b'"items":[1,' + number + b"]" in record_line
    assert b'"label":"' + number + b'"' in record_line
    assert json.loads(record_line)["record"]["event_properties"]["order_id"] == int(number)
    assert b"e+" not in record_line


# --- times ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["2024:03:01 05:10:00.000000", "2024-13-45 05:10:00.000000", "2024-03-01 25:10:00", "soon"],
)
def test_a_time_that_is_not_a_time_leaves_the_tap_as_exported(
    value: str, run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    record = GOOD | {"event_time": value, "client_event_time": "2024-03-01 05:09:59.000000"}
    (event,) = stream_records(local_run(run_tap, tmp_path, [orjson.dumps(record)]), "events")
    # Never rewritten: the schema's time field is null and the value as exported is kept under
    # its own name in additional_properties (conform.py), which target-posthog puts back.
    assert event["event_time"] is None
    assert event["additional_properties"]["event_time"] == value
    assert event["client_event_time"] == "2024-03-01T05:09:59.000000+00:00"


# --- files that are not export data --------------------------------------------------------


def test_files_that_are_not_export_data_are_skipped_with_one_info_line_each(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    folder = tmp_path / "export"
    (folder / ".hidden").mkdir(parents=True)
    real = gzip.compress(good_line(0) + b"\n")
    (folder / MEMBER).write_bytes(real)
    apple_double = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "  # AppleDouble header
    skipped = {
        f"._{MEMBER}": apple_double,
        ".DS_Store": b"\x00\x00\x00\x01Bud1",
        "complete": b"",
        "manifest.txt": b"export of project 123456",
        ".hidden/123456_2024-03-01_6#0.json.gz": gzip.compress(good_line(5) + b"\n"),
    }
    for name, data in skipped.items():
        (folder / name).write_bytes(data)
    with zipfile.ZipFile(folder / "export.zip", "w") as archive:
        archive.writestr("123456/", b"")
        archive.writestr("123456/123456_2024-03-01_7#0.json.gz", gzip.compress(good_line(1)))
        archive.writestr("__MACOSX/123456/._123456_2024-03-01_7#0.json.gz", apple_double)
        archive.writestr("123456/.DS_Store", b"Bud1")
    run = run_tap({"export_path": str(folder), "start_date": TAP_DAY.isoformat(), "end_date": END})
    assert run.returncode == 0, run.stderr
    # "n" is not an Amplitude field: the tap keeps it in additional_properties.
    assert [r["additional_properties"]["n"] for r in stream_records(run, "events")] == [0, 1]
    log = run.stderr.splitlines()
    expected = [
        *skipped,
        "export.zip:123456/",
        "export.zip:__MACOSX/123456/._123456_2024-03-01_7#0.json.gz",
        "export.zip:123456/.DS_Store",
    ]
    for name in expected:
        said = [
            line for line in log if f"Skipping {name}: " in line or f"{folder}/{name}: " in line
        ]
        assert len(said) == 1, (name, run.stderr[-3000:])
        assert "INFO" in said[0]
    assert "Traceback" not in run.stderr


# --- the Export API ------------------------------------------------------------------------


def test_a_200_answer_that_is_not_a_zip_is_split_down_to_the_hour_and_named(
    tmp_path: Path, run_tap: Callable[..., TapRun]
) -> None:
    store = small_store(tmp_path / "store", hours=24, events=600)
    bad_hour = TAP_DAY + timedelta(hours=13)
    with AmplitudeStandIn(store) as api:
        api.error_page_hours.add(bad_hour)
        run = run_tap(
            tap_config(api, window_hours=24, end_date=(TAP_DAY + timedelta(hours=24)).isoformat())
        )
        widths = [(r.end - r.start) for r in api.requests if r.start and r.end]
    assert run.returncode == 1
    stop = [line for line in run.stderr.splitlines() if "tap-amplitude stopped:" in line]
    assert len(stop) == 1, run.stderr[-3000:]
    assert "Hour 2024-03-01T13:00Z (1 h)" in stop[0]
    assert "not a zip" in stop[0] and "HTML page" in stop[0]
    assert "export_path" in stop[0] and "S3" in stop[0]
    assert "Traceback" not in run.stderr
    assert [line for line in run.stderr.splitlines() if "ERROR" in line] == stop  # one line
    assert run.bookmark == "2024-03-01T13:00:00+00:00"  # every hour before it, none after
    emitted = {r["uuid"] for r in stream_records(run, "events")}
    before = {e["uuid"] for e in store.iter_events() if e["server_upload_time"] < "2024-03-01 13"}
    assert emitted >= before
    assert min(widths) == timedelta(0)  # the stand-in's end is the last hour: one hour asked
