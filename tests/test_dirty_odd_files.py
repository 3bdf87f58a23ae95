"""Odd export files a new user met that stopped the tap or went uncounted (issue 11): members
that are not gzip (plain lines starting with `null`, UTF-16 text, gzip twice, another
compression, a `.zip` holding gzip), empty members and files, zero padding after the gzip data,
files whose name gives no hour, folders named like members. Each is read, or skipped or
stopped on with one line naming it and the cause, and counted in the run's Done line.
"""

from __future__ import annotations

import base64
import bz2
import codecs
import gzip
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from tap_amplitude.export import NO_UPLOAD_HOUR

from tests.conftest import TAP_DAY, TapRun
from tests.test_dirty_lines import log_text, run_folder
from tests.test_dirty_odd_inputs import WINDOW, done_line
from tests.test_dirty_tap import END, GOOD, MEMBER, good_line, stream_records

pytestmark = pytest.mark.timeout(180)


def export_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "export"
    folder.mkdir()
    return folder


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
    folder = export_folder(tmp_path)
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
    folder = export_folder(tmp_path)
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
    folder = export_folder(tmp_path)
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
    folder = export_folder(tmp_path)
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


def test_a_local_file_whose_name_gives_no_hour_is_read_with_its_records_hour_and_counted(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """It was skipped with a warning and counted nowhere; a file without any server_upload_time
    was skipped, its records nowhere."""
    folder = export_folder(tmp_path)
    renamed = [
        orjson.dumps(GOOD | {"server_upload_time": upload, "n": n})
        for n, upload in ((1, "2024-03-01 07:00:00.000000"), (2, "2024-03-01 06:59:59.999999"))
    ]
    (folder / "events-copy.json.gz").write_bytes(gzip.compress(b"\n".join(renamed)))
    (folder / MEMBER).write_bytes(gzip.compress(good_line(0)))
    timeless = b'{"event_type":"x","uuid":"6f1d5a36-0c1b-4d7e-9a8f-2b3c4d5e6f79"}'
    (folder / "no-times.json.gz").write_bytes(gzip.compress(timeless + b"\nnull\n"))
    (folder / "123456_2024-03-01_9#0.json.gz").mkdir()  # a folder named like a member
    with zipfile.ZipFile(folder / "export.zip", "w") as archive:
        archive.writestr("123456/123456_2024-03-01_8#0.json.gz/", b"")
    run = run_folder(run_tap, folder)
    assert run.returncode == 0, run.stderr[-3000:]
    # Each record with its own hour: n=2 (06:59) before n=1 (07:00).
    assert [e["additional_properties"]["n"] for e in stream_records(run, "events")] == [0, 2, 1]
    log = log_text(run.stderr)
    assert (
        f"{folder}/events-copy.json.gz: its name gives no hour; read with each hour of a "
        "server_upload_time in it within this run (2024-03-01T06:00:00+00:00, "
        "2024-03-01T07:00:00+00:00), each time emitting that hour's records only (0 outside "
        "this run left for the run that covers them, 0 without one)"
    ) in log
    assert (
        f"{folder}/no-times.json.gz: its name gives no hour; read with each hour of a "
        "server_upload_time in it within this run (2024-03-01T00:00:00+00:00), each time "
        "emitting that hour's records only (0 outside this run left for the run that covers "
        "them, 2 without one set aside with hour 2024-03-01T00:00:00+00:00)"
    ) in log
    # One line per such file, not a second about checkpoints: a local window is one hour, whose
    # only checkpoint is its end anyway.
    assert "does not name an hour inside its window" not in run.stderr
    set_aside = stream_records(run, "unreadable_lines")
    assert [(r["member"], r["line_number"], r["reason"]) for r in set_aside] == [
        ("no-times.json.gz", 1, NO_UPLOAD_HOUR),
        ("no-times.json.gz", 2, "not an object: JSON null"),
    ]
    assert base64.b64decode(set_aside[0]["line_base64"]) == timeless
    done = done_line(run)
    assert "2 lines set aside as unreadable (1 no upload hour, 1 not an object;" in done
    assert "4 members read (0 empty, 3 named without an hour)" in done  # events-copy twice
    assert (
        "2 files skipped (1 a folder entry, 1 a folder, not an export file (its contents are "
        "read on their own))"
    ) in done
    assert run.bookmark == "2024-03-01T08:00:00+00:00"  # past the 07:00 record, read


def test_records_of_a_file_whose_name_gives_no_hour_are_each_judged_by_their_own_hour(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """The file was placed by its earliest hour, before the run's start, and not read at all:
    its event of 05:00, inside the run, was lost."""
    folder = export_folder(tmp_path)
    old = orjson.dumps(GOOD | {"server_upload_time": "2024-02-29 23:59:59.000000", "n": 1})
    new = orjson.dumps(GOOD | {"server_upload_time": "2024-03-01 05:00:02.000000", "n": 2})
    (folder / "events-copy.json.gz").write_bytes(gzip.compress(old + b"\n" + new + b"\n"))
    run = run_tap({"export_path": str(folder), "start_date": TAP_DAY.isoformat(), "end_date": END})
    assert run.returncode == 0, run.stderr[-3000:]
    assert [e["additional_properties"]["n"] for e in stream_records(run, "events")] == [2]
    log = log_text(run.stderr)
    assert (
        f"{folder}/events-copy.json.gz: its name gives no hour; read with each hour of a "
        "server_upload_time in it within this run (2024-03-01T05:00:00+00:00), each time "
        "emitting that hour's records only (1 outside this run left for the run that covers "
        "them, 0 without one)"
    ) in log
    assert run.bookmark == "2024-03-01T06:00:00+00:00"  # past the 05:00 record, read
    assert stream_records(run, "unreadable_lines") == []

    (folder / "events-copy.json.gz").write_bytes(gzip.compress(old + b"\n"))
    run = run_tap({"export_path": str(folder), "start_date": TAP_DAY.isoformat(), "end_date": END})
    assert run.returncode == 0, run.stderr[-3000:]
    assert stream_records(run, "events") == []
    assert (
        f"{folder}/events-copy.json.gz: its name gives no hour, and every server_upload_time "
        "in it is outside this run: not read"
    ) in log_text(run.stderr)


def test_a_rerun_from_the_state_of_a_file_whose_name_gives_no_hour_sends_nothing_again(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """Its 07:30 record was emitted while reading its 05:00 one, bookmarked only to 06:00: the
    next run emitted it again (bookmark 08:00). Its set-aside lines came again on every run
    (twice in an appending target such as target-jsonl)."""
    folder = export_folder(tmp_path)
    k1 = orjson.dumps(GOOD | {"server_upload_time": "2024-03-01 05:00:01.000000", "n": 1})
    k2 = orjson.dumps(GOOD | {"server_upload_time": "2024-03-01 07:30:00.000000", "n": 2})
    (folder / "events-copy.json.gz").write_bytes(gzip.compress(k1 + b"\nnull\n" + k2 + b"\n"))
    first = run_folder(run_tap, folder)
    assert first.returncode == 0, first.stderr[-3000:]
    assert [e["additional_properties"]["n"] for e in stream_records(first, "events")] == [1, 2]
    assert first.bookmark == "2024-03-01T08:00:00+00:00"
    set_aside = stream_records(first, "unreadable_lines")
    assert [(r["line_number"], r["reason"]) for r in set_aside] == [(2, "not an object: JSON null")]
    assert (
        f"window 2024-03-01T07:00Z (1 h), member {folder}/events-copy.json.gz: 1 lines "
        "without an upload hour not set aside again (they are set aside once, when the file's "
        "first hour is read)"
    ) in log_text(first.stderr)

    rerun = run_tap(
        {"export_path": str(folder), "start_date": TAP_DAY.isoformat(), "end_date": END},
        state=first.states[-1],
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert stream_records(rerun, "events") == []
    assert stream_records(rerun, "unreadable_lines") == []
    assert (
        f"{folder}/events-copy.json.gz: its name gives no hour, and every server_upload_time "
        "in it is outside this run: not read"
    ) in log_text(rerun.stderr)


def test_a_record_of_a_later_hour_is_emitted_by_the_run_covering_it_its_set_aside_lines_once(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """A run ending at 06:00 then one from its STATE: the first set aside the file's
    hourless line, the second (reading the 07:30 record) set it aside again."""
    folder = export_folder(tmp_path)
    k1 = orjson.dumps(GOOD | {"server_upload_time": "2024-03-01 05:00:01.000000", "n": 1})
    k2 = orjson.dumps(GOOD | {"server_upload_time": "2024-03-01 07:30:00.000000", "n": 2})
    (folder / "events-copy.json.gz").write_bytes(gzip.compress(k1 + b"\n[]\n" + k2 + b"\n"))
    config = {"export_path": str(folder), "start_date": TAP_DAY.isoformat()}
    first = run_tap(config | {"end_date": "2024-03-01T06:00:00+00:00"})
    assert first.returncode == 0, first.stderr[-3000:]
    assert [e["additional_properties"]["n"] for e in stream_records(first, "events")] == [1]
    assert len(stream_records(first, "unreadable_lines")) == 1
    second = run_tap(config | {"end_date": END}, state=first.states[-1])
    assert second.returncode == 0, second.stderr[-3000:]
    assert [e["additional_properties"]["n"] for e in stream_records(second, "events")] == [2]
    assert stream_records(second, "unreadable_lines") == []
    assert second.bookmark == "2024-03-01T08:00:00+00:00"
    assert (
        f"{folder}/events-copy.json.gz: its name gives no hour; read with each hour of a "
        "server_upload_time in it within this run (2024-03-01T07:00:00+00:00), each time "
        "emitting that hour's records only (1 outside this run left for the run that covers "
        "them, 1 without one set aside by the run reading its first hour)"
    ) in log_text(second.stderr)


def test_a_server_upload_time_that_is_not_a_time_is_set_aside_saying_so(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """An epoch number was set aside as having no server_upload_time at all."""
    folder = export_folder(tmp_path)
    epoch = orjson.dumps(GOOD | {"server_upload_time": 1709269201})
    (folder / "events-copy.json.gz").write_bytes(gzip.compress(epoch + b"\n"))
    run = run_folder(run_tap, folder)
    assert run.returncode == 0, run.stderr[-3000:]
    set_aside = stream_records(run, "unreadable_lines")
    assert [r["reason"] for r in set_aside] == [
        "no upload hour: server_upload_time is not a time in a file whose name gives no hour; "
        "rename the file <project>_<YYYY-MM-DD>_<H>#<n>.json.gz, or fix the field, to read it"
    ]
    assert base64.b64decode(set_aside[0]["line_base64"]) == epoch


def test_zero_padding_after_the_gzip_data_is_said_and_other_trailing_bytes_stop_naming_them(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """Both stopped the run as 'Invalid gzip/zlib wrapper' or 'truncated'."""
    folder = export_folder(tmp_path)
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
    folder = export_folder(tmp_path)
    (folder / "export.zip").write_bytes(gzip.compress(good_line(0) + b"\n" + good_line(1)))
    run = run_folder(run_tap, folder)
    assert run.returncode == 0, run.stderr[-3000:]
    assert [e["additional_properties"]["n"] for e in stream_records(run, "events")] == [0, 1]
    log = log_text(run.stderr)
    assert (
        f"{folder}/export.zip: named .zip but holds gzip data (its first bytes); read as one member"
    ) in log
    assert "1 members read (0 empty, 1 named without an hour)" in done_line(run)


def test_a_member_gzipped_twice_or_holding_utf16_is_read_inside(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """Both gave lines of garbage, each set aside."""
    folder = export_folder(tmp_path)
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


@pytest.mark.parametrize(
    ("flag", "method", "said"),
    [
        (1, 8, "a password-protected zip entry"),
        (0, 99, "a zip entry this tap cannot unpack (That compression method is not supported)"),
    ],
    ids=["encrypted", "aes-method"],
)
def test_a_zip_entry_that_cannot_be_unpacked_stops_naming_it_without_a_traceback(
    flag: int, method: int, said: str, run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """A password-protected or AES-compressed entry crashed the tap with a traceback."""
    folder = export_folder(tmp_path)
    with zipfile.ZipFile(folder / "e.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MEMBER, gzip.compress(good_line(0)))
    data = bytearray((folder / "e.zip").read_bytes())
    for header, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local, central
        at = data.find(header) + offset
        data[at] |= flag  # general purpose bit 0: encrypted
        data[at + 2] = method  # compression method
    (folder / "e.zip").write_bytes(bytes(data))
    run = run_folder(run_tap, folder)
    assert run.returncode != 0 and run.bookmark is None
    assert (
        f"{WINDOW}, member {folder}/e.zip:{MEMBER}: {said}; unzip the archive with the tool "
        "that made it and put the .json.gz files in export_path instead; nothing of it was "
        "read; no bookmark passes its hour"
    ) in run.stderr
    assert "Traceback" not in run.stderr


def test_a_file_whose_name_is_not_utf8_has_its_lines_set_aside_without_a_crash(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """A byte of a name on disk that is not UTF-8 reached orjson as a lone surrogate: the tap
    crashed writing the set-aside line's record ("str is not valid UTF-8")."""
    folder = export_folder(tmp_path)
    name = os.fsdecode(b"caf\xe9_2024-03-01_5#0.json.gz")  # Latin-1, as an old tool named it
    (folder / name).write_bytes(gzip.compress(good_line(0) + b"\nnull\n"))
    run = run_folder(run_tap, folder)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(stream_records(run, "events")) == 1
    (kept,) = stream_records(run, "unreadable_lines")
    assert kept["member"] == "caf\\xe9_2024-03-01_5#0.json.gz"
    assert kept["source"] == f"{folder}/caf\\xe9_2024-03-01_5#0.json.gz"
    assert "Traceback" not in run.stderr


def test_a_member_whose_lines_end_in_cr_alone_is_read_line_by_line(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """Classic Mac OS line endings: the whole member was one line, set aside as 'more JSON'."""
    folder = export_folder(tmp_path)
    lines = [good_line(0), good_line(1), b"", good_line(2)]
    (folder / MEMBER).write_bytes(gzip.compress(b"\r".join(lines) + b"\r"))
    run = run_folder(run_tap, folder)
    assert run.returncode == 0, run.stderr[-3000:]
    assert [e["additional_properties"]["n"] for e in stream_records(run, "events")] == [0, 1, 2]
    assert stream_records(run, "unreadable_lines") == []
    said = [line for line in log_text(run.stderr) if "CR alone" in line]
    assert said == [
        f"{WINDOW}, member {folder / MEMBER}: lines end in CR alone (classic Mac OS); read so"
    ]
