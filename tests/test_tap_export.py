"""Reading export files: times rewritten to RFC 3339 UTC, unknown fields kept, gzip streams
read chunk by chunk, and any damage reported with file, member and line."""

from __future__ import annotations

import gzip
import io
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from tap_amplitude.content import gunzip_lines
from tap_amplitude.export import (
    CorruptExportError,
    MemberRef,
    member_hour,
    read_archive,
    read_member,
    zip_members,
)
from tap_amplitude.setaside import UnreadableLine
from tap_amplitude.times import normalise_record, normalise_time


def gz(lines: list[bytes]) -> bytes:
    return gzip.compress(b"".join(line + b"\n" for line in lines))


def test_amplitude_times_become_rfc3339_utc():
    assert normalise_time("2024-03-01 07:05:09.123456") == "2024-03-01T07:05:09.123456+00:00"
    assert normalise_time("2024-03-01 07:05:09") == "2024-03-01T07:05:09.000000+00:00"


@pytest.mark.parametrize("value", ["yesterday", "", "2024-03-01T07:05:09Z", 1709276709, None])
def test_times_in_other_shapes_pass_through_unchanged(value):
    assert normalise_time(value) == value


def test_record_keeps_unknown_fields_and_rewrites_only_times():
    record = {
        "uuid": "u1",
        "event_time": "2024-03-01 07:05:09.123456",
        "server_upload_time": "2024-03-01 07:06:00.000001",
        "user_creation_time": None,
        "brand_new_field": {"nested": "2024-03-01 07:05:09.123456"},
    }
    out = normalise_record(dict(record))
    assert out["event_time"] == "2024-03-01T07:05:09.123456+00:00"
    assert out["server_upload_time"] == "2024-03-01T07:06:00.000001+00:00"
    assert out["user_creation_time"] is None
    assert out["brand_new_field"] == record["brand_new_field"]


def test_gunzip_lines_handles_concatenated_members_and_small_reads():
    data = gz([b"a", b"bb"]) + gz([b"ccc"])
    assert list(gunzip_lines(io.BufferedReader(io.BytesIO(data), buffer_size=7))) == [
        b"a",
        b"bb",
        b"ccc",
    ]


def test_truncated_gzip_is_an_error_not_an_early_end():
    data = gz([orjson.dumps({"uuid": str(i)}) for i in range(2000)])
    with pytest.raises(EOFError):
        list(gunzip_lines(io.BytesIO(data[: len(data) // 2])))


def test_member_hour_from_amplitude_file_names():
    assert member_hour("187520/187520_2024-03-01_7#0.json.gz") == datetime(
        2024, 3, 1, 7, tzinfo=UTC
    )
    assert member_hour("187520_2024-03-01_23#12.json.gz") == datetime(2024, 3, 1, 23, tzinfo=UTC)
    assert member_hour("notes.json.gz") is None


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_archive_members_are_read_in_order(tmp_path):
    path = write_zip(
        tmp_path / "export.zip",
        {
            "1/1_2024-03-01_0#0.json.gz": gz([b'{"n":"a"}', b'{"n":"b"}']),
            "1/1_2024-03-01_1#0.json.gz": gz([b'{"n":"c"}']),
        },
    )
    assert [r["n"] for r in read_archive(path)] == ["a", "b", "c"]  # type: ignore[index]
    assert [ref.member for ref in zip_members(path)] == [
        "1/1_2024-03-01_0#0.json.gz",
        "1/1_2024-03-01_1#0.json.gz",
    ]


def test_an_invalid_json_line_is_handed_on_with_member_and_line_not_raised(tmp_path):
    path = write_zip(
        tmp_path / "export.zip",
        {"1/1_2024-03-01_0#0.json.gz": gz([b'{"n":"a"}', b'{"n":"b"', b'{"n":"c"}'])},
    )
    items = list(read_archive(path, context="window W"))
    assert [item["n"] for item in items if isinstance(item, dict)] == ["a", "c"]
    (unreadable,) = [item for item in items if isinstance(item, UnreadableLine)]
    assert (unreadable.member, unreadable.line_number, unreadable.line) == (
        "1/1_2024-03-01_0#0.json.gz",
        2,
        b'{"n":"b"',
    )


def test_corrupt_gzip_member_names_the_member(tmp_path):
    data = bytearray(gz([orjson.dumps({"uuid": str(i), "pad": "x" * 50}) for i in range(500)]))
    data[len(data) // 2 : len(data) // 2 + 20] = b"\x00" * 20
    member = tmp_path / "1_2024-03-01_4#0.json.gz"
    member.write_bytes(bytes(data))
    with pytest.raises(CorruptExportError, match=r"1_2024-03-01_4#0\.json\.gz"):
        list(read_member(MemberRef(member)))


def test_a_file_that_is_not_a_zip_is_reported(tmp_path):
    path = tmp_path / "export.zip"
    path.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(CorruptExportError, match=r"export\.zip: not a readable zip"):
        zip_members(path)
