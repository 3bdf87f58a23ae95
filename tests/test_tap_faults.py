"""Faults and awkward data on the Export API stand-in: the tap narrows, skips, retries or stops
clearly, and whatever happens, nothing is lost and nothing is bookmarked past unread data."""

from __future__ import annotations

import base64
import signal
import subprocess
from datetime import datetime, timedelta

import orjson
import pytest

from tests.conftest import (
    TAP_AMPLITUDE,
    TAP_API_KEY,
    TAP_DAY,
    TAP_SECRET,
    bookmark_of,
    file_size_limit,
    parse_messages,
    small_store,
    start_tap,
    tap_config,
    tap_environment,
    write_tap_files,
)
from tests.testbed.amplitude import AmplitudeStandIn
from tests.testbed.events import ExportSpec
from tests.testbed.faults import Fault
from tests.testbed.store import ExportStore

END = (TAP_DAY + timedelta(days=3)).isoformat()


def assert_exactly_once(run, store) -> None:
    assert run.returncode == 0, run.stderr
    assert len(run.uuids()) == len(set(run.uuids())), "duplicates"
    assert set(run.uuids()) == store.uuids(), "missing records"


def statuses(api) -> list[int | None]:
    return [r.status for r in api.requests]


def test_too_large_exports_are_split_in_halves(amplitude_api, three_day_store, run_tap):
    biggest_hour = max(three_day_store.export_bytes(h, h) for h in three_day_store.hours())
    amplitude_api.max_export_bytes = biggest_hour * 5  # a day is too large, a few hours are not
    run = run_tap(tap_config(amplitude_api, end_date=END))
    assert_exactly_once(run, three_day_store)
    assert 400 in statuses(amplitude_api)
    served = [r for r in amplitude_api.requests if r.status == 200]
    assert all(three_day_store.export_bytes(r.start, r.end) <= biggest_hour * 5 for r in served)
    assert "splitting" in run.stderr
    assert run.bookmark == "2024-03-04T00:00:00+00:00"


def test_gateway_timeouts_on_wide_windows_split_them(amplitude_api, three_day_store, run_tap):
    amplitude_api.timeout_export_bytes = three_day_store.export_bytes(TAP_DAY, TAP_DAY) * 8
    run = run_tap(tap_config(amplitude_api, end_date=END))
    assert_exactly_once(run, three_day_store)
    assert 504 in statuses(amplitude_api)
    assert run.bookmark == "2024-03-04T00:00:00+00:00"


def test_an_hour_that_always_fails_stops_the_run_with_the_bookmark_before_it(
    amplitude_api, three_day_store, run_tap
):
    bad_hour = TAP_DAY + timedelta(hours=30)
    amplitude_api.always_fail_hours = {bad_hour}
    run = run_tap(tap_config(amplitude_api, end_date=END, max_retries=2))
    assert run.returncode != 0
    assert "2024-03-02T06:00Z" in run.stderr
    assert "S3" in run.stderr and "export_path" in run.stderr
    assert run.bookmark == bad_hour.isoformat()
    before = {
        r["uuid"] for r in three_day_store.iter_events(TAP_DAY, bad_hour - timedelta(hours=1))
    }
    assert before <= set(run.uuids())
    assert all(r["server_upload_time"] < bad_hour.isoformat() for r in run.records)
    one_hour_tries = [r for r in amplitude_api.requests if r.start == r.end == bad_hour]
    assert len(one_hour_tries) == 3  # the first try and max_retries=2 retries


def test_windows_without_data_are_skipped(tmp_path, run_tap, monkeypatch):
    monkeypatch.setenv("LOGLEVEL", "debug")  # window lines are debug detail
    store = ExportStore.build(tmp_path / "export", ExportSpec(start=TAP_DAY, hours=24, events=500))
    store.add(ExportSpec(start=TAP_DAY + timedelta(days=3), hours=24, events=500, seed=9))
    with AmplitudeStandIn(store, api_key=TAP_API_KEY, secret_key=TAP_SECRET) as api:
        run = run_tap(
            tap_config(api, window_hours=24, end_date=(TAP_DAY + timedelta(days=4)).isoformat())
        )
        codes = statuses(api)
    assert_exactly_once(run, store)
    assert codes == [200, 404, 404, 200]
    assert "no data" in run.stderr
    assert run.bookmark == "2024-03-05T00:00:00+00:00"


def test_a_year_of_empty_history_is_crossed_in_few_requests(tmp_path, run_tap):
    store = ExportStore.build(
        tmp_path / "export", ExportSpec(start=TAP_DAY, hours=48, events=1_000)
    )
    year_before = TAP_DAY - timedelta(days=366)
    with AmplitudeStandIn(store, api_key=TAP_API_KEY, secret_key=TAP_SECRET) as api:
        run = run_tap(tap_config(api, start_date=year_before.isoformat(), end_date=END))
        requests = api.requests
    assert_exactly_once(run, store)
    assert len(requests) < 30
    assert all(r.status in {200, 404} for r in requests)


@pytest.mark.parametrize(
    "fault",
    [
        Fault.status(429, retry_after=0),
        Fault.status(500),
        Fault.status(503, retry_after=0),
        Fault.truncate(),
        Fault.drop(),
    ],
    ids=["429", "500", "503", "truncated-download", "dropped-connection"],
)
def test_transient_failures_are_retried_and_lose_nothing(
    amplitude_api, three_day_store, run_tap, fault
):
    amplitude_api.inject(fault, times=2)
    run = run_tap(tap_config(amplitude_api, window_hours=24, end_date=END))
    assert_exactly_once(run, three_day_store)
    assert len(amplitude_api.requests) == 3 + 2  # three daily windows, two of them retried
    assert "retry 1 of 3" in run.stderr and "retry 2 of 3" in run.stderr


def test_retry_after_is_honoured(amplitude_api, three_day_store, run_tap):
    amplitude_api.inject(Fault.status(429, retry_after=0.6))
    run = run_tap(tap_config(amplitude_api, window_hours=72, end_date=END))
    assert_exactly_once(run, three_day_store)
    throttled, retried = amplitude_api.requests[:2]
    assert throttled.status == 429 and retried.status == 200
    assert retried.received_at - throttled.received_at >= 0.55  # waited as told, not 0.01 s


def test_retries_exhausted_fail_the_run_clearly(amplitude_api, run_tap):
    amplitude_api.inject(Fault.status(503), times=10)
    run = run_tap(tap_config(amplitude_api, window_hours=24, end_date=END, max_retries=2))
    assert run.returncode != 0
    assert "still failing after 2 retries" in run.stderr
    assert run.records == []
    assert run.bookmark is None


def test_bad_credentials_fail_at_once_naming_keys_and_region(amplitude_api, run_tap):
    config = tap_config(amplitude_api, secret_key="wrong-secret-5d3")
    run = run_tap(config)
    assert run.returncode != 0
    assert "api_key and secret_key" in run.stderr and "data_region" in run.stderr
    assert len(amplitude_api.requests) == 1  # not retried
    assert "wrong-secret-5d3" not in run.stdout + run.stderr


def test_corrupt_member_fails_loudly_and_bookmarks_nothing_past_it(fresh_store, run_tap):
    bad_hour = TAP_DAY + timedelta(hours=40)
    damaged = fresh_store.corrupt_member(bad_hour)
    with AmplitudeStandIn(fresh_store, api_key=TAP_API_KEY, secret_key=TAP_SECRET) as api:
        run = run_tap(tap_config(api, window_hours=8, end_date=END))
    assert run.returncode != 0
    assert damaged.name in run.stderr
    assert "window 2024-03-02T16:00Z" in run.stderr
    assert run.bookmark is not None and run.bookmark <= bad_hour.isoformat()
    assert run.bookmark == "2024-03-02T16:00:00+00:00"


def test_sigterm_writes_the_safe_state_and_exits_non_zero(tmp_path):
    store = small_store(tmp_path / "export", hours=72, events=6_000)
    with AmplitudeStandIn(store, api_key=TAP_API_KEY, secret_key=TAP_SECRET) as api:
        args = write_tap_files(
            tmp_path / "run", tap_config(api, window_hours=4, end_date=END), None
        )
        tap = start_tap(args, stderr=subprocess.PIPE)
        assert tap.stdout is not None
        messages = []
        for line in tap.stdout:
            messages.append(orjson.loads(line))
            if messages[-1]["type"] == "STATE":
                break
        # The tap is blocked on the pipe we stopped reading: it is mid-run when the signal lands.
        tap.send_signal(signal.SIGTERM)
        # The rest through the same buffered reader: communicate() would skip what it holds.
        rest = tap.stdout.read()
        stderr = tap.stderr.read() if tap.stderr else b""
        tap.wait(timeout=60)
    messages += [orjson.loads(line) for line in rest.splitlines()]
    assert tap.returncode == 128 + signal.SIGTERM
    assert messages[-1]["type"] == "STATE"
    safe_until = bookmark_of(messages[-1]["value"])
    assert safe_until is not None and safe_until < "2024-03-04T00:00:00+00:00"
    emitted = {m["record"]["uuid"] for m in messages if m["type"] == "RECORD"}
    covered = {
        r["uuid"]
        for r in store.iter_events(TAP_DAY, datetime.fromisoformat(safe_until) - timedelta(hours=1))
    }
    assert covered <= emitted
    assert b"SIGTERM" in stderr


def test_sigterm_during_a_slow_download_stops_promptly_without_a_bookmark(amplitude_api, tmp_path):
    amplitude_api.inject(Fault.delay(5))
    args = write_tap_files(tmp_path / "run", tap_config(amplitude_api, end_date=END), None)
    tap = start_tap(args, stderr=subprocess.PIPE)
    assert tap.stderr is not None
    for line in tap.stderr:  # wait until the run has started its first request
        if b"This run covers" in line:
            break
    tap.send_signal(signal.SIGTERM)
    stdout, _ = tap.communicate(timeout=4)  # well before the delayed answer would come
    messages = [orjson.loads(line) for line in stdout.splitlines()]
    assert tap.returncode == 128 + signal.SIGTERM
    # The streams' SCHEMAs (unreadable_lines' too, written before reading), then the STATE.
    assert [(m["type"], m.get("stream")) for m in messages] == [
        ("SCHEMA", "events"),
        ("SCHEMA", "unreadable_lines"),
        ("STATE", None),
    ]
    assert messages[-1]["value"] == {"bookmarks": {"events": {}}}


def test_secrets_never_appear_in_any_output(amplitude_api, run_tap, tmp_path):
    basic = base64.b64encode(f"{TAP_API_KEY}:{TAP_SECRET}".encode()).decode()
    amplitude_api.inject(Fault.status(500))
    runs = [
        run_tap(tap_config(amplitude_api, window_hours=24, end_date=END)),
        run_tap(tap_config(amplitude_api, data_region="mars")),
        run_tap(tap_config(amplitude_api, api_url="http://example.com")),
    ]
    amplitude_api.always_fail_hours = {TAP_DAY}
    runs.append(run_tap(tap_config(amplitude_api, max_retries=0)))
    config_args = write_tap_files(tmp_path / "about", tap_config(amplitude_api), None)
    about = subprocess.run(
        [str(TAP_AMPLITUDE), "--about", "--format=json", *config_args],
        capture_output=True,
        text=True,
        check=True,
    )
    assert runs[0].returncode == 0
    assert all(run.returncode != 0 for run in runs[1:])
    outputs = [run.stdout + run.stderr for run in runs] + [about.stdout + about.stderr]
    for output in outputs:
        for secret in (TAP_API_KEY, TAP_SECRET, basic):
            assert secret not in output


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs POSIX file size limits")
def test_a_disk_that_refuses_the_download_stops_with_one_clear_line_then_resumes(
    amplitude_api, three_day_store, run_tap, tmp_path
):
    config = tap_config(amplitude_api, end_date=END, window_hours=1)
    args = write_tap_files(tmp_path / "full-disk", config, None)
    # The limit is per file (one archive per one-hour window): the first hour fits, and the
    # run stops at the first busier hour.
    hours = three_day_store.hours()
    limit = three_day_store.export_bytes(hours[0], hours[0]) + 512
    assert max(three_day_store.export_bytes(h, h) for h in hours) > limit
    full = subprocess.run(
        [str(TAP_AMPLITUDE), *args], capture_output=True, text=True, timeout=120,
        env=tap_environment(), check=False, preexec_fn=file_size_limit(limit),
    )  # fmt: skip
    assert full.returncode == 1
    assert "cannot write the downloaded export to" in full.stderr
    assert "Free space there, or set TMPDIR" in full.stderr
    assert "Traceback" not in full.stderr
    first = parse_messages(full.stdout)
    states = [m["value"] for m in first if m["type"] == "STATE"]
    resumed = run_tap(config, states[-1] if states else None)
    assert resumed.returncode == 0, resumed.stderr
    read_before = [m["record"]["uuid"] for m in first if m["type"] == "RECORD"]
    assert set(read_before) | set(resumed.uuids()) == three_day_store.uuids()
    assert not set(read_before) & set(resumed.uuids()), "re-read a bookmarked hour"
    assert read_before, "the limit stopped the first window: nothing shows a resume"


def test_a_reader_that_goes_away_stops_the_tap_with_one_clear_line(amplitude_api, tmp_path):
    """The target (or Meltano) died: the tap's next write meets a broken pipe."""
    args = write_tap_files(tmp_path / "gone", tap_config(amplitude_api, end_date=END), None)
    tap = start_tap(args, stderr=subprocess.PIPE)
    assert tap.stdout is not None and tap.stderr is not None
    tap.stdout.read(1000)  # the reader takes a little, then dies
    tap.stdout.close()
    stderr = tap.stderr.read().decode()
    assert tap.wait(timeout=60) == 1
    assert "tap-amplitude stopped: its output is no longer read (broken pipe)" in stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
