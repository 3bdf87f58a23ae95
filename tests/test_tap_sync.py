"""End-to-end runs of the real `tap-amplitude` CLI against the Export API stand-in (and files):
exactly once, field for field; bookmarks per hour and window; resume after a rerun, new hours,
a kill."""

from __future__ import annotations

import re
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from tap_amplitude.times import normalise_record

from tests.conftest import (
    TAP_API_KEY,
    TAP_DAY,
    TAP_SECRET,
    bookmark_of,
    small_store,
    start_tap,
    tap_config,
    write_tap_files,
)
from tests.testbed.amplitude import AmplitudeStandIn
from tests.testbed.events import ExportSpec

END = (TAP_DAY + timedelta(days=3)).isoformat()  # the stores' data: 72 hours from TAP_DAY


def expected_records(store, start=None, end=None) -> dict[str, dict[str, Any]]:
    """What the tap must emit for these hours: the raw records with RFC 3339 times, and `paying`
    (the one field the stand-in's exports spell in another type, "true") as the documented
    boolean."""
    expected = {}
    for raw in store.iter_events(start, end):
        record = normalise_record(raw)
        if record["paying"] is not None:
            record["paying"] = {"true": True, "false": False}[record["paying"]]
        expected[record["uuid"]] = record
    return expected


def test_multi_day_export_arrives_exactly_once_field_for_field(
    amplitude_api, three_day_store, run_tap
):
    run = run_tap(tap_config(amplitude_api))
    assert run.returncode == 0, run.stderr
    assert len(run.records) == three_day_store.event_count
    assert len(set(run.uuids())) == len(run.records)
    expected = expected_records(three_day_store)
    for record in run.records:
        assert record == expected[record["uuid"]]
    assert run.records[0]["server_upload_time"].endswith("+00:00")
    converted = sum(r["paying"] is not None for r in expected.values())
    assert f"paying: {converted} string converted to boolean" in run.stderr


def test_bookmarks_are_hour_and_window_ends_in_one_rfc3339_form(
    amplitude_api, three_day_store, run_tap
):
    run = run_tap(tap_config(amplitude_api, window_hours=24, end_date=END))
    assert run.returncode == 0, run.stderr
    bookmarks = [bookmark_of(state) for state in run.states]
    hour_ends = {(hour + timedelta(hours=1)).isoformat() for hour in three_day_store.hours()}
    window_ends = {"2024-03-02T00:00:00+00:00", "2024-03-03T00:00:00+00:00", END}
    assert bookmarks == sorted(hour_ends | window_ends)
    assert all(re.fullmatch(r"2024-03-0\dT\d\d:00:00\+00:00", b) for b in bookmarks)
    final = run.states[-1]["bookmarks"]["events"]
    assert final == {
        "replication_key": "server_upload_time",
        "replication_key_value": "2024-03-04T00:00:00+00:00",
    }


def test_each_window_logs_how_much_of_the_range_is_read_at_debug_level(
    amplitude_api, run_tap, monkeypatch
):
    quiet = run_tap(tap_config(amplitude_api, window_hours=24, end_date=END))
    assert quiet.returncode == 0, quiet.stderr
    assert "Window " not in quiet.stderr and "METRIC" not in quiet.stderr
    monkeypatch.setenv("LOGLEVEL", "debug")
    run = run_tap(tap_config(amplitude_api, window_hours=24, end_date=END))
    assert run.returncode == 0, run.stderr
    progress = re.findall(r"Window .*; ([0-9.]+)% of the range read", run.stderr)
    assert progress == ["33.3", "66.7", "100.0"]  # three one-day windows of a three-day range


def test_each_state_follows_all_records_of_the_windows_it_covers(
    amplitude_api, three_day_store, run_tap
):
    run = run_tap(tap_config(amplitude_api, window_hours=6, end_date=END))
    assert run.returncode == 0, run.stderr
    seen: set[str] = set()
    for message in run.messages:
        if message["type"] == "RECORD":
            seen.add(message["record"]["uuid"])
        elif message["type"] == "STATE":
            covered_until = bookmark_of(message["value"])
            assert covered_until is not None
            hours = [h for h in three_day_store.hours() if h.isoformat() < covered_until]
            must_have = {r["uuid"] for h in hours for r in three_day_store.iter_events(h, h)}
            assert must_have <= seen


def test_rerun_with_final_state_emits_nothing_and_asks_for_nothing(amplitude_api, run_tap):
    config = tap_config(amplitude_api, end_date=END)
    first = run_tap(config)
    assert first.returncode == 0, first.stderr
    requests_before = len(amplitude_api.requests)
    second = run_tap(config, state=first.states[-1])
    assert second.returncode == 0, second.stderr
    assert second.records == []
    assert len(amplitude_api.requests) == requests_before
    assert second.bookmark == first.bookmark


def test_new_hours_bring_only_the_new_records(fresh_store, run_tap):
    with AmplitudeStandIn(fresh_store, api_key=TAP_API_KEY, secret_key=TAP_SECRET) as api:
        first = run_tap(tap_config(api, end_date=END))
        assert first.returncode == 0, first.stderr
        old = set(first.uuids())
        fresh_store.add(ExportSpec(start=TAP_DAY + timedelta(days=3), hours=24, events=800, seed=8))
        new_end = (TAP_DAY + timedelta(days=4)).isoformat()
        second = run_tap(tap_config(api, end_date=new_end), state=first.states[-1])
    assert second.returncode == 0, second.stderr
    assert len(second.records) == 800
    assert not old & set(second.uuids())
    assert old | set(second.uuids()) == fresh_store.uuids()
    assert second.bookmark == "2024-03-05T00:00:00+00:00"


def test_killed_midway_then_resumed_from_last_state_loses_nothing(tmp_path, run_tap):
    store = small_store(tmp_path / "export", hours=72, events=6_000)
    with AmplitudeStandIn(store, api_key=TAP_API_KEY, secret_key=TAP_SECRET) as api:
        config = tap_config(api, window_hours=4, end_date=END)
        args = write_tap_files(tmp_path / "killed", config, None)
        tap = start_tap(args)
        assert tap.stdout is not None
        emitted: list[str] = []
        last_state = None
        states_seen = 0
        # Read until the third checkpoint, then kill without warning: the tap is mid-run (its
        # output blocks on the pipe we stop reading, so it cannot have finished).
        for line in tap.stdout:
            message = orjson.loads(line)
            if message["type"] == "RECORD":
                emitted.append(message["record"]["uuid"])
            elif message["type"] == "STATE":
                last_state = message["value"]
                states_seen += 1
                if states_seen == 3:
                    break
        tap.send_signal(signal.SIGKILL)
        tap.wait(timeout=30)
        tap.stdout.close()
        assert last_state is not None
        resume_from = bookmark_of(last_state)
        requests_before = len(api.requests)
        resumed = run_tap(config, state=last_state)
        first_resumed_request = api.requests[requests_before]
    assert resumed.returncode == 0, resumed.stderr
    assert set(emitted) | set(resumed.uuids()) == store.uuids()
    # The resumed run starts at the bookmark: nothing before it is asked for again.
    assert first_resumed_request.start is not None
    assert first_resumed_request.start.isoformat() == resume_from
    assert len(resumed.uuids()) == len(set(resumed.uuids()))


def test_local_export_files_give_the_same_records_and_bookmarks(
    amplitude_api, three_day_store, run_tap, tmp_path
):
    from_api = run_tap(tap_config(amplitude_api, window_hours=24, end_date=END))
    local = {
        "export_path": str(three_day_store.directory),
        "start_date": TAP_DAY.isoformat(),
        "end_date": END,
    }
    from_files = run_tap(local)
    assert from_files.returncode == 0, from_files.stderr
    assert sorted(from_files.uuids()) == sorted(from_api.uuids())
    assert from_files.bookmark == from_api.bookmark == "2024-03-04T00:00:00+00:00"
    by_uuid = {r["uuid"]: r for r in from_api.records}
    assert all(r == by_uuid[r["uuid"]] for r in from_files.records)


def test_local_export_zip_and_its_unpacked_members_are_read_once(
    three_day_store, run_tap, tmp_path
):
    folder = tmp_path / "downloads"
    folder.mkdir()
    three_day_store.write_zip(folder / "export.zip", TAP_DAY, TAP_DAY + timedelta(hours=71))
    for member in three_day_store.members()[:5]:
        (folder / member.name).write_bytes(Path(member.path).read_bytes())
    run = run_tap({"export_path": str(folder), "start_date": TAP_DAY.isoformat(), "end_date": END})
    assert run.returncode == 0, run.stderr
    assert sorted(run.uuids()) == sorted(three_day_store.uuids())


def test_local_files_bookmark_the_last_hour_on_disk_so_later_files_are_read(tmp_path, run_tap):
    # An S3 export lands hour by hour: hours with no file yet must stay open for the next run.
    store = small_store(tmp_path / "files", hours=24, events=500)
    config = {
        "export_path": str(store.directory),
        "start_date": TAP_DAY.isoformat(),
        "end_date": (TAP_DAY + timedelta(days=30)).isoformat(),
    }
    first = run_tap(config)
    assert first.returncode == 0, first.stderr
    assert first.bookmark == (TAP_DAY + timedelta(hours=24)).isoformat()

    before = store.uuids()
    store.add(ExportSpec(start=TAP_DAY + timedelta(hours=24), hours=6, events=120, seed=3))
    second = run_tap(config, state=first.states[-1])
    assert second.returncode == 0, second.stderr
    assert set(second.uuids()) == store.uuids() - before
    assert second.bookmark == (TAP_DAY + timedelta(hours=30)).isoformat()


def test_killed_mid_window_of_an_adaptive_run_repeats_only_that_window(tmp_path, run_tap):
    # A year of nothing, then three busy days: windows first grow, then are refused as too
    # large (as Amplitude does past 4 GB; here past 1.5 MB) and shrink to the data.
    store = small_store(tmp_path / "export", hours=72, events=6_000)
    with AmplitudeStandIn(store, api_key=TAP_API_KEY, secret_key=TAP_SECRET) as api:
        api.max_export_bytes = 1_500_000
        config = tap_config(
            api, start_date=(TAP_DAY - timedelta(days=365)).isoformat(), end_date=END
        )
        config["target_window_mb"] = 1
        args = write_tap_files(tmp_path / "killed", config, None)
        tap = start_tap(args)
        assert tap.stdout is not None
        before_last_state: list[str] = []
        since_last_state: list[str] = []
        last_state = None
        # Kill mid-window, not at a checkpoint: some records of the window in flight are out.
        for line in tap.stdout:
            message = orjson.loads(line)
            if message["type"] == "RECORD":
                since_last_state.append(message["record"]["uuid"])
                if len(before_last_state) > 2_000 and len(since_last_state) >= 50:
                    break
            elif message["type"] == "STATE":
                last_state = message["value"]
                before_last_state += since_last_state
                since_last_state = []
        tap.send_signal(signal.SIGKILL)
        tap.wait(timeout=30)
        tap.stdout.close()
        assert last_state is not None
        assert len(since_last_state) >= 50, "the tap finished before the kill"
        resumed = run_tap(config, state=last_state)
    assert resumed.returncode == 0, resumed.stderr
    adaptive_requests = {request.end - request.start for request in api.requests}
    assert len(adaptive_requests) > 2, "the run did not adapt its windows"
    resumed_uuids = set(resumed.uuids())
    assert set(before_last_state) | set(since_last_state) | resumed_uuids == store.uuids()
    # What the last STATE covered is never read again; only the window in flight is.
    assert not resumed_uuids & set(before_last_state)
    assert set(since_last_state) <= resumed_uuids
