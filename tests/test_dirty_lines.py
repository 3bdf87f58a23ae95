"""Line-level handling of dirty exports as a user sees it (issue 11): blank lines counted, CRLF
and a missing final newline harmless, damaged files stopping with one line that says what to do,
repaired ids never merging two people, and the run's last line a STATE to resume from.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from tap_amplitude.export import CorruptExportError, MemberRef, read_member
from tap_amplitude.lines import REPAIR_IDENTITY, REPAIR_SURROGATE, REPAIR_UTF8

from tests.conftest import TAP_DAY, TapRun, small_store, tap_config
from tests.pipeline_harness import POSTHOG_KEY, Pipeline, drill_target_config
from tests.test_dirty_tap import END, GOOD, MEMBER, good_line, stream_records
from tests.testbed.amplitude import AmplitudeStandIn
from tests.testbed.posthog import PostHogStandIn
from tests.testbed.store import ExportStore

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[1]
WINDOW = "window 2024-03-01T05:00Z (1 h)"


def run_folder(run_tap: Callable[..., TapRun], folder: Path) -> TapRun:
    return run_tap({"export_path": str(folder), "start_date": TAP_DAY.isoformat(), "end_date": END})


def write_member(folder: Path, data: bytes, name: str = MEMBER) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(gzip.compress(data))
    return path


def log_text(stderr: str | list[str]) -> list[str]:
    """Each log line without its time, level and logger columns."""
    lines = stderr.splitlines() if isinstance(stderr, str) else stderr
    return [line.split(" | ")[-1] for line in lines]


# --- blank lines, CRLF, no final newline ---------------------------------------------------


def test_blank_lines_are_counted_and_crlf_and_a_missing_final_newline_change_nothing(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    data = b"\n".join(
        [good_line(0), b"", b"   ", b"\t", b"\r", good_line(1) + b"\r", b" \t\r", good_line(2)]
    )  # CRLF on one line, blank lines of every JSON whitespace, no newline at the end
    path = write_member(tmp_path / "export", data)
    run = run_folder(run_tap, tmp_path / "export")
    assert run.returncode == 0, run.stderr
    events = stream_records(run, "events")
    assert [e["additional_properties"]["n"] for e in events] == [0, 1, 2]
    assert events[1]["event_type"] == GOOD["event_type"] and "repairs" not in events[1]
    assert stream_records(run, "unreadable_lines") == []
    assert (
        f"{WINDOW}, member {path}: 5 blank lines skipped (only spaces, tabs or CR; no data), "
        "the first line 2"
    ) in log_text(run.stderr)
    (done,) = [line for line in log_text(run.stderr) if line.startswith("Done:")]
    assert (
        "0 lines set aside as unreadable (stream unreadable_lines), 5 blank lines skipped, "
        "0 uuids derived, 0 without a readable event_time, 0 lines repaired"
    ) in done
    assert run.messages[-1]["type"] == "STATE"


def test_a_last_line_cut_short_without_a_newline_is_set_aside_byte_for_byte(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    cut = good_line(1)[:40]
    write_member(tmp_path / "export", good_line(0) + b"\n" + cut)
    run = run_folder(run_tap, tmp_path / "export")
    assert run.returncode == 0, run.stderr
    (kept,) = stream_records(run, "unreadable_lines")
    assert (kept["line_number"], kept["line_text"]) == (2, cut.decode())
    assert kept["reason"].startswith("not JSON: Unterminated string")
    assert run.bookmark == "2024-03-01T06:00:00+00:00"


def test_each_kind_of_odd_record_is_said_once_per_member_with_its_first_line(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """Issue 11's inputs: a record without uuid, a cut emoji, no event_time, an unreadable one;
    one line per kind and member, naming the file and the first line, never the content."""
    no_uuid = {k: v for k, v in GOOD.items() if k != "uuid"} | {"$insert_id": "ins-1"}
    cut = orjson.dumps(GOOD | {"event_properties": {"text": "X"}}).replace(
        b'"X"', rb'"nice \ud83d"'
    )
    no_time = {k: v for k, v in GOOD.items() if k != "event_time"}
    no_time |= {
        "uuid": "6f1d5a36-0c1b-4d7e-9a8f-2b3c4d5e6f01",
        "client_event_time": GOOD["event_time"],
    }
    bad_time = GOOD | {"uuid": "6f1d5a36-0c1b-4d7e-9a8f-2b3c4d5e6f02"}
    bad_time["event_time"] = "2024:03:01 05:10:00.000000"
    lines = [
        good_line(0),
        orjson.dumps(no_uuid),
        cut,
        orjson.dumps(no_time),
        orjson.dumps(bad_time),
    ]
    path = write_member(tmp_path / "export", b"\n".join(lines) + b"\n")
    run = run_folder(run_tap, tmp_path / "export")
    assert run.returncode == 0, run.stderr
    said = [line for line in log_text(run.stderr) if line.startswith(f"{WINDOW}, member {path}:")]
    assert said == [
        f"{WINDOW}, member {path}: 1 lines repaired, the first on line 3 (1 {REPAIR_SURROGATE}; "
        "each record names its repairs in its repairs field)",
        f"{WINDOW}, member {path}: 1 records without a usable uuid got a derived one "
        "(uuid_derived), the first on line 2",
        f"{WINDOW}, member {path}: 2 records without a readable event_time, the first on line 4 "
        "(target-posthog takes client_event_time, else server_received_time, and says which in "
        "$amplitude_timestamp_from; with neither, it dead-letters the record)",
    ]
    (done,) = [line for line in log_text(run.stderr) if line.startswith("Done:")]
    assert (
        "0 lines set aside as unreadable (stream unreadable_lines), 0 blank lines skipped, "
        f"1 uuids derived, 2 without a readable event_time, 1 lines repaired (1 {REPAIR_SURROGATE})"
    ) in done
    assert (
        "nice" not in run.stderr
        and "2024:03:01" not in run.stderr
        and "Traceback" not in run.stderr
    )


# --- the run's last line -------------------------------------------------------------------


def test_the_taps_last_line_is_a_state_and_the_readme_resume_recipe_reads_it(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """README: `... > events.singer`, then the recipe's line makes `state.json`, which a later
    run resumes from (reading nothing again)."""
    write_member(tmp_path / "export", b"\n".join([good_line(0), b"null", good_line(1)]) + b"\n")
    run = run_folder(run_tap, tmp_path / "export")
    assert run.returncode == 0, run.stderr
    assert run.messages[-1]["type"] == "STATE"  # whatever streams the tap wrote
    assert [m["stream"] for m in run.messages if m["type"] == "SCHEMA"] == [
        "events",
        "unreadable_lines",
    ]
    readme = (REPO / "tap-amplitude" / "README.md").read_text()
    (recipe,) = [line for line in readme.splitlines() if line.endswith("# the last STATE")]
    if shutil.which("jq") is None:
        pytest.skip("jq (used by the README's recipe) is not installed")
    (tmp_path / "events.singer").write_text(run.stdout)
    subprocess.run(["bash", "-c", recipe], cwd=tmp_path, check=True, timeout=30)
    state = orjson.loads((tmp_path / "state.json").read_bytes())
    assert state == run.states[-1]
    again = run_tap(
        {"export_path": str(tmp_path / "export"), "start_date": TAP_DAY.isoformat()}, state
    )
    assert again.returncode == 0 and stream_records(again, "events") == []


def test_the_target_readmes_run_and_resume_recipe_resumes_from_the_last_state(
    tmp_path: Path,
) -> None:
    """target-posthog's README, "Alone": the first command, then the resume command, as
    written (bash, the plugins on PATH); the resumed run reads nothing again."""
    if shutil.which("bash") is None:
        pytest.skip("the README's recipe is for bash")
    readme = (REPO / "target-posthog" / "README.md").read_text()
    block = readme.split("Alone:\n\n```bash\n", 1)[1].split("\n```", 1)[0]
    commands = [c for c in block.replace("\\\n", "").splitlines() if not c.startswith("#")]
    assert len(commands) == 2 and "--state" in commands[1]
    write_member(tmp_path / "export", b"\n".join([good_line(0), b"null", good_line(1)]) + b"\n")
    tap = {"export_path": str(tmp_path / "export"), "start_date": TAP_DAY.isoformat()}
    (tmp_path / "tap.json").write_bytes(orjson.dumps(tap | {"end_date": END}))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    with PostHogStandIn(api_key=POSTHOG_KEY) as posthog:
        target = drill_target_config(tmp_path / "run", posthog)
        (tmp_path / "target.json").write_bytes(orjson.dumps(target))
        requests = []
        for command in commands:
            subprocess.run(
                ["bash", "-c", f"set -o pipefail; {command}"],
                cwd=tmp_path, env=env, check=True, timeout=120, capture_output=True,
            )  # fmt: skip
            requests.append(len(posthog.requests))
        sent = sorted(e["uuid"] for e in posthog.events if e["event"] == GOOD["event_type"])
        assert posthog.duplicate_uuid_count == 0
    assert requests[0] > 0 and requests[1] == requests[0]  # the resumed run sent nothing
    states = [orjson.loads(line) for line in (tmp_path / "states.jsonl").read_bytes().splitlines()]
    assert states and all(set(state) == {"bookmarks"} for state in states)
    # (Local files: the bookmark stops after the last hour that has a file.)
    assert states[-1]["bookmarks"]["events"]["replication_key_value"] == "2024-03-01T06:00:00+00:00"
    assert sent == sorted(str(uuid.UUID(int=n + 1, version=4)) for n in range(2))  # once each


# --- damage that re-reading can fix: one line, no traceback --------------------------------


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _flipped(data: bytes) -> bytes:
    damaged = bytearray(data)
    damaged[len(damaged) // 2] ^= 0xFF
    damaged[len(damaged) // 2 + 1] ^= 0x55
    return bytes(damaged)


MANY = gzip.compress(b"\n".join(good_line(n) for n in range(300)) + b"\n")


@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        (
            MEMBER,
            _half(MANY),
            f"{WINDOW}, member {{folder}}/{MEMBER}: unreadable before its first line (gzip stream "
            "ends before its end-of-stream marker (truncated)); no bookmark passes its hour; the "
            "file may be half-copied: copy it again from the export and run again",
        ),
        (
            MEMBER,
            _flipped(MANY),
            f"{WINDOW}, member {{folder}}/{MEMBER}: unreadable before its first line (gzip data "
            "damaged: Error -6 Incorrect checksum found); no bookmark passes its hour; the file "
            "may be half-copied: copy it again from the export and run again",
        ),
        (
            "export.zip",
            b"PK\x03\x04 cut short",
            "{folder}/export.zip: not a readable zip archive (File is not a zip file); nothing "
            "in it was read; it may be half-copied: copy it again from the export and run again",
        ),
        (
            "export.zip",
            "zip-with-half-member",
            f"{WINDOW}, member {{folder}}/export.zip:123456/{MEMBER}: unreadable before its first "
            "line (gzip stream ends before its end-of-stream marker (truncated)); no bookmark "
            "passes its hour; the file may be half-copied: copy it again from the export and run "
            "again",
        ),
    ],
    ids=["truncated-gzip", "bad-bytes-gzip", "not-a-zip", "truncated-zip-member"],
)
def test_a_damaged_file_stops_with_one_line_naming_it_its_cause_and_the_fix(
    name: str, content: bytes | str, said: str, run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    write_member(folder, good_line(0) + b"\n", "123456_2024-03-01_4#0.json.gz")  # hour before
    if content == "zip-with-half-member":
        with zipfile.ZipFile(folder / name, "w") as archive:
            archive.writestr(f"123456/{MEMBER}", _half(MANY))
    else:
        (folder / name).write_bytes(content if isinstance(content, bytes) else b"")
    run = run_folder(run_tap, folder)
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    # (How far a cut gzip stream reads depends on where it was cut.)
    said_lines = [re.sub(r"after line \d+ ", "after line N ", line) for line in log_text(errors)]
    assert said_lines == ["tap-amplitude stopped: " + said.format(folder=folder)]
    assert "Traceback" not in run.stderr
    bookmark = run.bookmark
    assert bookmark is None or bookmark <= "2024-03-01T05:00:00+00:00"  # never past the hour
    assert not any(
        m["type"] == "RECORD" and m["stream"] == "unreadable_lines" for m in run.messages
    )


def test_members_holding_plain_json_lines_are_read_as_they_are_and_said_once(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """A `.json` member of a zip, and a `.json.gz` a browser decompressed but kept the name of:
    no stop that copying again could never mend."""
    folder = tmp_path / "export"
    folder.mkdir()
    plain = b"\n".join([good_line(0), b"", good_line(1)])  # and no final newline
    (folder / MEMBER).write_bytes(plain)
    with zipfile.ZipFile(folder / "export.zip", "w") as archive:
        archive.writestr("123456/123456_2024-03-01_6#0.json", good_line(2) + b"\n")
    run = run_folder(run_tap, folder)
    assert run.returncode == 0, run.stderr
    assert [e["additional_properties"]["n"] for e in stream_records(run, "events")] == [0, 1, 2]
    said = [line for line in log_text(run.stderr) if "not gzip-compressed" in line]
    assert said == [
        f"{WINDOW}, member {folder / MEMBER}: not gzip-compressed; read as plain JSON lines",
        "window 2024-03-01T06:00Z (1 h), member "
        f"{folder}/export.zip:123456/123456_2024-03-01_6#0.json: not gzip-compressed; read as "
        "plain JSON lines",
    ]


def test_a_file_that_cannot_be_opened_is_named_with_its_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(Root reads any file, so a permission error is simulated at open.)"""
    path = write_member(tmp_path, good_line(0))

    def refuse(self: Path, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(CorruptExportError) as stop:
        list(read_member(MemberRef(path), WINDOW))
    assert str(stop.value) == (
        f"{WINDOW}, member {path}: unreadable before its first line (cannot read it: "
        "Permission denied); no bookmark passes its hour; let the user running the tap read it, "
        "and run again"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_stops_naming_it(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:  # pragma: no cover (CI runs as root)
    path = write_member(tmp_path / "export", good_line(0))
    path.chmod(0)
    run = run_folder(run_tap, tmp_path / "export")
    assert run.returncode == 1 and "cannot read it: Permission denied" in run.stderr


def test_a_folder_or_a_broken_link_named_like_an_export_file_is_skipped_with_one_line(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    folder = tmp_path / "export"
    write_member(folder, good_line(0) + b"\n")
    (folder / "123456_2024-03-01_6#0.json.gz").mkdir()
    (folder / "123456_2024-03-01_7#0.json.gz").symlink_to(tmp_path / "gone.json.gz")
    run = run_folder(run_tap, folder)
    assert run.returncode == 0, run.stderr
    lines = log_text(run.stderr)
    assert (
        f"Skipping {folder}/123456_2024-03-01_6#0.json.gz: a folder, not an export file "
        "(its contents are read on their own)"
    ) in lines
    assert (
        f"Skipping {folder}/123456_2024-03-01_7#0.json.gz: a link to nothing (its target is "
        "missing)"
    ) in lines
    assert len(stream_records(run, "events")) == 1


# --- repaired ids never merge two people ---------------------------------------------------


def _person_line(n: int, user_id: bytes, device_id: bytes) -> bytes:
    """A record of user `user_id` on `device_id`, of a company named like the user."""
    record = GOOD | {"uuid": f"6f1d5a36-0c1b-4d7e-9a8f-2b3c4d5e6f{n:02d}", "user_id": "U"}
    record |= {"device_id": "D", "groups": {"company": "U"}}
    line = orjson.dumps(record)
    return line.replace(b'"U"', b'"' + user_id + b'"').replace(b'"D"', b'"' + device_id + b'"')


# Two users whose ids both repair to "u\ufffd", by each kind of repair; and a user whose id
# really is "u\ufffd" (valid UTF-8 in the export): three people, never one.
REPAIRED_IDS = [
    (rb"u\ud800", rb"dev-1"),
    (rb"u\ud801", rb"dev-2"),
    (b"u\xff", b"dev-3\xfe"),
    (b"u\xfe", b"dev-4\xfe\xfe"),
    ("u\ufffd".encode(), b"dev-5"),
]


def test_ids_that_repair_to_the_same_text_stay_distinct_people_in_posthog(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "export"
    lines = [_person_line(n, user, device) for n, (user, device) in enumerate(REPAIRED_IDS)]
    write_member(folder, b"\n".join(lines) + b"\n")
    with PostHogStandIn(api_key=POSTHOG_KEY) as posthog:
        tap_config = {
            "export_path": str(folder),
            "start_date": TAP_DAY.isoformat(),
            "end_date": END,
        }
        pipeline = Pipeline(
            tmp_path / "run", tap_config, drill_target_config(tmp_path / "run", posthog)
        )
        result = pipeline.run()
        assert result.ok, result.describe()
        events = {e["uuid"]: e for e in posthog.events}
        persons = posthog.people.persons()
    uuids = [f"6f1d5a36-0c1b-4d7e-9a8f-2b3c4d5e6f{n:02d}" for n in range(5)]
    user_ids = [events[uuid]["distinct_id"] for uuid in uuids]
    assert len(set(user_ids)) == 5
    # The repaired text stays readable; the mark and digest are the documented form.
    for user_id in user_ids[:4]:
        assert user_id[: -len(digest(b""))] == "u\ufffd#repaired-"
    assert user_ids[4] == "u\ufffd"
    people = [next(p for p in persons if uid in p.distinct_ids) for uid in user_ids]
    assert len({frozenset(p.distinct_ids) for p in people}) == 5  # five people, none merged
    companies = [events[uuid]["properties"]["$groups"]["company"] for uuid in uuids]
    assert sorted(companies) == sorted(user_ids)  # five companies too, by the same rule
    repairs = events["6f1d5a36-0c1b-4d7e-9a8f-2b3c4d5e6f00"]["properties"]["$amplitude_repairs"]
    assert repairs == [REPAIR_SURROGATE, REPAIR_IDENTITY]
    repairs = events["6f1d5a36-0c1b-4d7e-9a8f-2b3c4d5e6f02"]["properties"]["$amplitude_repairs"]
    assert repairs == [REPAIR_UTF8, REPAIR_IDENTITY]


def test_a_repaired_id_gets_the_same_form_on_every_read(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    line = _person_line(1, rb"u\ud800", b"d\xff")
    write_member(tmp_path / "export", line + b"\n")
    first = stream_records(run_folder(run_tap, tmp_path / "export"), "events")[0]
    write_member(tmp_path / "again", line + b"\n")
    second = stream_records(run_folder(run_tap, tmp_path / "again"), "events")[0]
    assert (first["user_id"], first["device_id"]) == (second["user_id"], second["device_id"])
    # sha256 of the exported value: the surrogate's code unit, the byte as itself.
    assert first["user_id"] == "u\ufffd#repaired-" + digest(b"u\xed\xa0\x80")
    assert first["device_id"] == "d\ufffd#repaired-" + digest(b"d\xff")


def digest(exported: bytes) -> str:
    return hashlib.sha256(exported).hexdigest()[:12]


def test_a_damaged_member_of_a_download_stops_with_one_line_naming_window_and_member(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    store = small_store(tmp_path / "store", hours=24, events=600)
    damaged = store.corrupt_member(TAP_DAY + timedelta(hours=5))
    with AmplitudeStandIn(store) as api:
        run = run_tap(tap_config(api, window_hours=24, end_date=END))
    assert run.returncode == 1
    errors = [line for line in run.stderr.splitlines() if "ERROR" in line]
    (said,) = [re.sub(r"after line \d+ ", "after line N ", line) for line in log_text(errors)]
    member = next(name for name in _zip_names(store) if name.endswith(damaged.name))
    assert re.fullmatch(
        r"tap-amplitude stopped: window 2024-03-01T00:00Z \.\. 2024-03-02T00:00Z \(24 h\), "
        rf"member {re.escape(member)}: "
        r"unreadable (after line N|before its first line) \([^)]+\)+; no bookmark passes its "
        r"hour; the download may have been damaged: run again \(the window is downloaded "
        r"again\); if it keeps failing, export that hour with Amplitude's S3/GCS export and read "
        r"it with export_path",
        said,
    ), said
    assert "/tmp" not in said  # the temporary download is no name a user can act on
    assert "Traceback" not in run.stderr
    assert run.bookmark == "2024-03-01T05:00:00+00:00"  # every hour before it, not its own


def _zip_names(store: ExportStore) -> list[str]:
    zipped = store.directory / "check.zip"
    store.write_zip(zipped, TAP_DAY, TAP_DAY + timedelta(hours=23))
    with zipfile.ZipFile(zipped) as archive:
        return archive.namelist()


def test_a_bit_flipped_gzip_member_emits_no_record_before_its_checksum_fails(
    run_tap: Callable[..., TapRun], tmp_path: Path
) -> None:
    """gzip checks its CRC at the member's end; inflating a damaged stream can give plausible
    but wrong lines first (changed values, invented uuids) that PostHog could never delete."""
    folder = tmp_path / "export"
    lines = b"".join(
        good_line(n)[:-1] + b',"s":"' + os.urandom(12).hex().encode() + b'"}\n'
        for n in range(20_000)
    )  # random text: the gzip member spans many reads
    path = write_member(folder, lines)
    damaged = bytearray(path.read_bytes())
    assert len(damaged) > 256 * 1024  # more than one read: records would flow before the end
    damaged[len(damaged) * 5 // 8] ^= 0x10
    path.write_bytes(bytes(damaged))
    run = run_folder(run_tap, folder)
    assert run.returncode == 1
    assert not [m for m in run.messages if m["type"] == "RECORD"]
    (stop,) = [line for line in log_text(run.stderr) if "stopped:" in line]
    assert "unreadable before its first line (" in stop and "copy it again" in stop
