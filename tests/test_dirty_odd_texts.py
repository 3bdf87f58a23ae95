"""Text no Singer writer or target holds (issue 11, issue 15): lone UTF-16 surrogates wherever
the tap keeps text (a key given twice whose earlier value holds one crashed the tap on every
run), two keys a repair makes one (a value was lost without a word). Each is repaired visibly
(U+FFFD, named in ``repairs``), nothing is lost, and a record the writer still refuses is set
aside byte for byte instead of stopping the run.
"""

from __future__ import annotations

import base64
import gzip
import io
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tap_amplitude import writer
from tap_amplitude.exactjson import REPAIR_DUPLICATE_KEYS
from tap_amplitude.lines import REPAIR_CONTROL
from tap_amplitude.tap import TapAmplitude
from tap_amplitude.texts import REPAIR_NUL, REPAIR_SURROGATE

from tests.conftest import TapRun
from tests.test_dirty_odd_inputs import done_line
from tests.test_dirty_tap import local_run, stream_records

pytestmark = pytest.mark.timeout(180)

H = (
    b'{"event_type":"E","event_time":"2024-03-01 05:00:01.000000","device_id":"d1",'
    b'"user_id":"u1","$insert_id":"i1","server_upload_time":"2024-03-01 05:00:01.000000",'
    b'"uuid":"eeeeeeee-0000-4000-8000-00000000000'
)


def line(n: int, tail: bytes) -> bytes:
    return H + str(n).encode() + b'"' + tail


def test_a_repeated_keys_earlier_value_or_key_with_a_lone_surrogate_is_repaired_and_kept(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """Each of these crashed the tap ("str is not valid UTF-8: surrogates not allowed")."""
    lines = [
        line(1, rb',"event_properties":{"t":"x\ud800","t":"y"}}'),
        line(2, rb',"note":"x\ud800","note":"y"}'),
        line(3, rb',"user_id":"u\ud800","user_id":"u2"}'),
        line(4, rb',"event_properties":{"k\ud800":"y","k\ud800":"z"}}'),
    ]
    run = local_run(run_tap, tmp_path, lines)
    assert run.returncode == 0, run.stderr[-3000:]
    assert stream_records(run, "unreadable_lines") == []
    one, two, three, four = stream_records(run, "events")
    assert one["event_properties"] == {"t": "y"}
    assert one["additional_properties"] == {"duplicate_keys": {"/event_properties/t": ["x\ufffd"]}}
    assert two["additional_properties"] == {"duplicate_keys": {"/note": ["x\ufffd"]}, "note": "y"}
    assert three["user_id"] == "u2"
    assert three["additional_properties"] == {"duplicate_keys": {"/user_id": ["u1", "u\ufffd"]}}
    assert four["event_properties"] == {"k\ufffd": "z"}
    assert four["additional_properties"] == {"duplicate_keys": {"/event_properties/k\ufffd": ["y"]}}
    for event in (one, two, three, four):
        assert event["repairs"] == [REPAIR_SURROGATE, REPAIR_DUPLICATE_KEYS]
    assert "Done: 4 events" in done_line(run)


def test_two_keys_a_repair_makes_one_keep_the_earlier_value_in_duplicate_keys(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """``{"a\\ud800":1,"a\\ud801":2}`` read as ``{"a\\ufffd":2}``, and 1 was nowhere."""
    run = local_run(
        run_tap, tmp_path, [line(1, rb',"event_properties":{"a\ud800":1,"a\ud801":2}}')]
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (event,) = stream_records(run, "events")
    assert event["event_properties"] == {"a\ufffd": 2}
    assert event["additional_properties"] == {"duplicate_keys": {"/event_properties/a\ufffd": [1]}}
    assert event["repairs"] == [REPAIR_SURROGATE, REPAIR_DUPLICATE_KEYS]


def test_a_record_the_writer_refuses_is_set_aside_byte_for_byte_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last line of defence: were any text left that orjson refuses, the record's line is
    set aside with a one-line reason instead of a traceback on every run."""
    (tmp_path / "123456_2024-03-01_5#0.json.gz").write_bytes(gzip.compress(b""))
    tap = TapAmplitude(
        config={
            "export_path": str(tmp_path),
            "start_date": "2024-03-01T00:00:00Z",
            "end_date": "2024-03-02T00:00:00Z",
        }
    )
    events = tap.streams["events"]
    raw = line(1, rb',"note":"x"}')
    events.line_stats.member = ("/export/f.json.gz", "f.json.gz", "member f.json.gz", None)
    events.line_stats.last_line = (7, raw)
    out = io.TextIOWrapper(io.BytesIO())
    monkeypatch.setattr(sys, "stdout", out)
    events._write_record_message({"uuid": "eeeeeeee-0000-4000-8000-000000000001", "x": "\ud800"})
    events._write_record_message({"uuid": "eeeeeeee-0000-4000-8000-000000000002"})
    writer.flush()
    out.flush()
    written = out.buffer.getvalue().decode()  # type: ignore[attr-defined]
    assert '"stream":"unreadable_lines"' in written
    assert base64.b64encode(raw).decode() in written
    assert "its record cannot be written as a Singer message: str is not valid UTF-8" in written
    assert '"uuid":"eeeeeeee-0000-4000-8000-000000000002"' in written
    assert "eeeeeeee-0000-4000-8000-000000000001" not in written.split("line_base64")[0]
    assert events.line_stats.unwritable == 1


def test_nul_in_values_keys_and_kept_values_becomes_u_fffd_named_in_repairs(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """PostgreSQL's text and jsonb hold no NUL: target-postgres failed on such a record for
    good. Escaped or raw, in a value, a key, an earlier value of a repeated key, or a string
    field's object kept as exported, it is U+FFFD, and `repairs` names it."""
    lines = [
        line(1, rb',"platform":"a\u0000b","event_properties":{"k\u0000":["\u0000"]}}'),
        line(2, b',"event_properties":{"t":"x\x00","t":"y"}}'),
        line(3, b',"os_name":{"x":"a\x00b"}}'),
        line(4, rb',"event_properties":{"a\u0000":1,"a\ufffd":2}}'),
    ]
    run = local_run(run_tap, tmp_path, lines)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "\\u0000" not in run.stdout
    one, two, three, four = stream_records(run, "events")
    assert one["platform"] == "a\ufffdb"
    assert one["event_properties"] == {"k\ufffd": ["\ufffd"]}
    assert one["repairs"] == [REPAIR_NUL]
    assert two["additional_properties"] == {"duplicate_keys": {"/event_properties/t": ["x\ufffd"]}}
    assert two["repairs"] == [REPAIR_CONTROL, REPAIR_NUL, REPAIR_DUPLICATE_KEYS]
    assert three["os_name"] == '{"x":"a\ufffdb"}'
    assert three["additional_properties"] == {"as_exported": {"os_name": {"x": "a\ufffdb"}}}
    assert three["repairs"] == [REPAIR_CONTROL, REPAIR_NUL]
    assert four["event_properties"] == {"a\ufffd": 2}
    assert four["additional_properties"] == {"duplicate_keys": {"/event_properties/a\ufffd": [1]}}
