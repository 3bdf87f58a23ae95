"""Odd inputs a new user met that stopped the tap or went uncounted (issue 11, issue 15): records
nested deeper than any Singer writer takes, members that are not gzip, integers wider than
Python reads, placeholder uuids, files whose name gives no hour, empty members and folders
named like members. Each is emitted exactly, repaired visibly, or set aside or skipped, named
and counted; none stops the run, none crashes it.
"""

from __future__ import annotations

import base64
import bz2
import codecs
import gzip
import json
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from tap_amplitude.exactjson import REPAIR_WIDE_INTEGER
from tap_amplitude.lines import REPAIR_CONTROL, TOO_DEEP
from target_posthog.event_keys import record_uuid

from tests.conftest import TAP_DAY, TapRun
from tests.test_dirty_lines import log_text, run_folder
from tests.test_dirty_tap import END, GOOD, MEMBER, good_line, local_run, stream_records

pytestmark = pytest.mark.timeout(180)

WINDOW = "window 2024-03-01T05:00Z (1 h)"


def done_line(run: TapRun) -> str:
    (done,) = [line for line in log_text(run.stderr) if line.startswith("Done:")]
    return done


def nested(levels: int, kind: str) -> bytes:
    """A JSON value of ``levels`` nested arrays or objects around 1."""
    opening, closing = (b'{"a":', b"}") if kind == "object" else (b"[", b"]")
    return opening * levels + b"1" + closing * levels


# --- nesting -------------------------------------------------------------------------------


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


# --- what a member holds -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "records", "set_aside"),
    [
        (b"null\n" + good_line(1) + b"\n", [1], ["not an object: JSON null"]),
        (b"\n" + good_line(1) + b"\n", [1], []),
        (b"\xef\xbb\xbf" + good_line(1) + b"\n", [1], []),
        (b"[" + good_line(1) + b"]\n" + good_line(2), [2], ["not an object: a JSON array"]),
        (b"42\n" + good_line(1) + b"\r\n", [1], ["not an object: a JSON number"]),
        (b'"text"\n' + good_line(1), [1], ["not an object: a JSON string"]),
    ],
    ids=["null", "blank-line", "bom", "array", "digits", "string"],
)
def test_a_member_is_gzip_only_when_it_starts_with_gzips_magic_bytes(
    content: bytes,
    records: list[int],
    set_aside: list[str],
    run_tap: Callable[..., TapRun],
    tmp_path: Path,
) -> None:
    """A plain member whose first line is `null` was read as gzip and stopped the run."""
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / MEMBER).write_bytes(content)
    with zipfile.ZipFile(folder / "export.zip", "w") as archive:
        archive.writestr("123456/123456_2024-03-01_6#0.json.gz", content)
    run = run_folder(run_tap, folder)
    assert run.returncode == 0, run.stderr[-3000:]
    got = [e["additional_properties"]["n"] for e in stream_records(run, "events")]
    assert got == records * 2
    assert [r["reason"] for r in stream_records(run, "unreadable_lines")] == set_aside * 2
    said = [line for line in log_text(run.stderr) if "not gzip-compressed" in line]
    assert said == [
        f"{WINDOW}, member {folder / MEMBER}: not gzip-compressed; read as plain JSON lines",
        f"window 2024-03-01T06:00Z (1 h), member {folder}/export.zip:123456/123456_2024-03-01_"
        "6#0.json.gz: not gzip-compressed; read as plain JSON lines",
    ]
    assert run.bookmark == "2024-03-01T07:00:00+00:00"


@pytest.mark.parametrize(
    ("encoding", "bom", "said"),
    [
        ("utf-16-le", codecs.BOM_UTF16_LE, "UTF-16 text (byte-order mark ff fe)"),
        ("utf-16-be", codecs.BOM_UTF16_BE, "UTF-16 text (byte-order mark fe ff)"),
        ("utf-32-le", codecs.BOM_UTF32_LE, "UTF-32 text (byte-order mark ff fe 00 00)"),
        ("utf-16-le", b"", "UTF-16-LE text (no byte-order mark; zero bytes show it)"),
        ("utf-32-be", b"", "UTF-32-BE text (no byte-order mark; zero bytes show it)"),
    ],
)
def test_a_utf16_member_is_read_as_the_same_text(
    encoding: str, bom: bytes, said: str, run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """What Windows PowerShell's `>` writes: its byte-order mark says how to read it."""
    text = (
        orjson.dumps(GOOD | {"event_properties": {"text": "grüße 😀"}}) + b"\r\n" + good_line(1)
    ).decode()
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / MEMBER).write_bytes(bom + text.encode(encoding))
    run = run_folder(run_tap, folder)
    assert run.returncode == 0, run.stderr[-3000:]
    first, second = stream_records(run, "events")
    assert first["event_properties"] == {"text": "grüße 😀"} and "repairs" not in first
    assert second["additional_properties"]["n"] == 1
    assert (
        f"{WINDOW}, member {folder / MEMBER}: {said}, not gzip-compressed; read as the same "
        "text in UTF-8"
    ) in log_text(run.stderr)


def test_a_member_compressed_otherwise_stops_naming_the_format_and_the_fix(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / MEMBER).write_bytes(bz2.compress(good_line(0) + b"\n"))
    run = run_folder(run_tap, folder)
    assert run.returncode != 0
    assert (
        f"{WINDOW}, member {folder / MEMBER}: compressed with bzip2, not gzip (its first bytes); "
        "decompress it (then gzip it, or leave it as plain JSON lines) and run again; nothing "
        "of it was read; no bookmark passes its hour"
    ) in run.stderr
    assert "Traceback" not in run.stderr and run.bookmark is None


def test_empty_members_are_counted_and_named_and_an_empty_file_stops_as_cut(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / MEMBER).write_bytes(gzip.compress(b""))  # an empty gzip stream
    with zipfile.ZipFile(folder / "export.zip", "w") as archive:
        archive.writestr("123456/123456_2024-03-01_6#0.json.gz", b"")  # a zero-byte member
        archive.writestr("123456/123456_2024-03-01_7#0.json.gz", gzip.compress(good_line(0)))
    run = run_folder(run_tap, folder)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(stream_records(run, "events")) == 1
    log = log_text(run.stderr)
    assert f"{WINDOW}, member {folder / MEMBER}: empty (no lines), no events in it" in log
    assert (
        f"window 2024-03-01T06:00Z (1 h), member {folder}/export.zip:123456/123456_2024-03-01_"
        "6#0.json.gz: empty (no lines), no events in it"
    ) in log
    assert "3 members read (2 empty, 0 named without an hour)" in done_line(run)
    assert run.bookmark == "2024-03-01T08:00:00+00:00"

    (folder / MEMBER).write_bytes(b"")  # a file cut to nothing (still being copied?)
    run = run_folder(run_tap, folder)
    assert run.returncode != 0 and run.bookmark is None
    assert (
        f"{WINDOW}, member {folder / MEMBER}: unreadable before its first line (an empty file "
        "(0 bytes): not even a gzip header; delete it if the export's own copy is empty too); "
        "no bookmark passes its hour; the file may be half-copied"
    ) in run.stderr


# --- numbers -------------------------------------------------------------------------------


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


# --- keys ----------------------------------------------------------------------------------


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


# --- output --------------------------------------------------------------------------------


def test_no_record_of_either_stream_carries_time_extracted(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """unreadable_lines RECORDs had it (the SDK's path), events' did not (README: omitted)."""
    run = local_run(run_tap, tmp_path, [good_line(0), b"null"])
    records = [m for m in run.messages if m["type"] == "RECORD"]
    assert {m["stream"] for m in records} == {"events", "unreadable_lines"}
    assert all(set(m) == {"type", "stream", "record"} for m in records), records


# --- files ---------------------------------------------------------------------------------


def test_a_local_file_whose_name_gives_no_hour_is_read_with_its_records_hour_and_counted(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """It was skipped with a warning and counted nowhere."""
    folder = tmp_path / "export"
    folder.mkdir()
    renamed = [
        orjson.dumps(GOOD | {"server_upload_time": upload, "n": n})
        for n, upload in ((1, "2024-03-01 07:00:00.000000"), (2, "2024-03-01 06:59:59.999999"))
    ]
    (folder / "events-copy.json.gz").write_bytes(gzip.compress(b"\n".join(renamed)))
    (folder / MEMBER).write_bytes(gzip.compress(good_line(0)))
    (folder / "no-times.json.gz").write_bytes(gzip.compress(b'{"event_type":"x"}\nnull\n'))
    (folder / "123456_2024-03-01_9#0.json.gz").mkdir()  # a folder named like a member
    with zipfile.ZipFile(folder / "export.zip", "w") as archive:
        archive.writestr("123456/123456_2024-03-01_8#0.json.gz/", b"")
    run = run_folder(run_tap, folder)
    assert run.returncode == 0, run.stderr[-3000:]
    assert [e["additional_properties"]["n"] for e in stream_records(run, "events")] == [0, 1, 2]
    log = log_text(run.stderr)
    assert (
        f"{folder}/events-copy.json.gz: its name gives no hour; read with hour "
        "2024-03-01T06:00:00+00:00, the earliest server_upload_time in it"
    ) in log
    reason = "its name gives no hour, and no line in it has a server_upload_time"
    assert f"Skipping {folder}/no-times.json.gz: {reason}" in log
    done = done_line(run)
    assert "2 members read (0 empty, 1 named without an hour)" in done
    assert (
        "3 files skipped (1 a folder entry, 1 a folder, not an export file (its contents are "
        f"read on their own), 1 {reason})"
    ) in done
    assert run.bookmark == "2024-03-01T07:00:00+00:00"  # the last hour with a file


def test_the_start_date_still_holds_for_a_file_placed_by_its_records(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    old = orjson.dumps(GOOD | {"server_upload_time": "2024-02-29 23:00:00.000000"})
    (folder / "renamed.json.gz").write_bytes(gzip.compress(old))
    (folder / MEMBER).write_bytes(gzip.compress(good_line(0)))
    run = run_tap({"export_path": str(folder), "start_date": TAP_DAY.isoformat(), "end_date": END})
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(stream_records(run, "events")) == 1
    assert (
        f"{folder}/renamed.json.gz: its name gives no hour; read with hour "
        "2024-02-29T23:00:00+00:00, the earliest server_upload_time in it (outside this run: "
        "not read)"
    ) in log_text(run.stderr)


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


def test_zero_padding_after_the_gzip_data_is_said_and_other_trailing_bytes_stop_naming_them(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """Both stopped the run as 'Invalid gzip/zlib wrapper' or 'truncated'."""
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / MEMBER).write_bytes(gzip.compress(good_line(0) + b"\n") + b"\x00" * 4096)
    run = run_folder(run_tap, folder)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(stream_records(run, "events")) == 1
    assert (
        f"{WINDOW}, member {folder / MEMBER}: 4096 zero bytes after its gzip data (padding), "
        "ignored"
    ) in log_text(run.stderr)

    (folder / MEMBER).write_bytes(gzip.compress(good_line(0) + b"\n") + b"<html>")
    run = run_folder(run_tap, folder)
    assert run.returncode != 0 and run.bookmark is None
    assert (
        f"{WINDOW}, member {folder / MEMBER}: bytes after the end of its gzip data that are "
        "neither gzip nor zero padding; its events were read whole, but what follows them "
        "cannot be: copy the file again from the export, or cut it after its gzip data, and run "
        "again; nothing of it was read; no bookmark passes its hour"
    ) in run.stderr
    assert "Traceback" not in run.stderr


def test_a_file_named_zip_that_holds_gzip_data_is_read_as_one_member(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """It stopped the run as 'not a readable zip archive ... it may be half-copied'."""
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "export.zip").write_bytes(gzip.compress(good_line(0) + b"\n" + good_line(1)))
    run = run_folder(run_tap, folder)
    assert run.returncode == 0, run.stderr[-3000:]
    assert [e["additional_properties"]["n"] for e in stream_records(run, "events")] == [0, 1]
    log = log_text(run.stderr)
    assert (
        f"{folder}/export.zip: named .zip but holds gzip data (its first bytes); read as one member"
    ) in log
    assert "1 members read (0 empty, 1 named without an hour)" in done_line(run)


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
    assert event["event_properties"] == {"text": "a\tb\x00c\x1bd"}
    assert event["user_id"] == "u\x01"
    assert event["repairs"] == [REPAIR_CONTROL]
    record_line = next(r for r in run.stdout.splitlines() if r.startswith('{"type":"RECORD"'))
    assert '"text":"a\\tb\\u0000c\\u001bd"' in record_line  # valid JSON again
    assert stream_records(run, "unreadable_lines") == []


def test_a_member_gzipped_twice_or_holding_utf16_is_read_inside(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """Both gave lines of garbage, each set aside."""
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / MEMBER).write_bytes(gzip.compress(gzip.compress(good_line(0) + b"\n")))
    utf16 = codecs.BOM_UTF16_LE + (good_line(1) + b"\r\n").decode().encode("utf-16-le")
    with zipfile.ZipFile(folder / "export.zip", "w") as archive:
        archive.writestr("123456/123456_2024-03-01_6#0.json.gz", gzip.compress(utf16))
    run = run_folder(run_tap, folder)
    assert run.returncode == 0, run.stderr[-3000:]
    assert [e["additional_properties"]["n"] for e in stream_records(run, "events")] == [0, 1]
    assert stream_records(run, "unreadable_lines") == []
    log = log_text(run.stderr)
    assert f"{WINDOW}, member {folder / MEMBER}: gzip-compressed 2 times; read inside each" in log
    assert (
        f"window 2024-03-01T06:00Z (1 h), member {folder}/export.zip:123456/123456_2024-03-01_"
        "6#0.json.gz: UTF-16 text (byte-order mark ff fe), gzip-compressed; read as the same "
        "text in UTF-8"
    ) in log
