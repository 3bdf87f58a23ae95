"""The real `target-posthog` CLI when things go wrong: refusals, outages, signals, bad input."""

from __future__ import annotations

import contextlib
import fcntl
import re
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from target_posthog.extras import with_extra_fields
from target_posthog.mapping import UnmappableError, map_record
from target_posthog.reader import QUIET_SECONDS

from tests.conftest import file_size_limit
from tests.target_support import (
    POSTHOG_KEY,
    SCHEMA,
    TARGET,
    UPDATE_MARKER,
    StateWatcher,
    delivered,
    is_export_event,
    messages_with_states,
    posthog,
    record,
    run_target,
    send_signal_and_finish,
    start_target,
    state,
    tap_records,
    target_config,
)
from tests.testbed.faults import Fault
from tests.testbed.posthog import PostHogStandIn

__all__ = ["posthog"]  # a fixture, used by name


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return tap_records(200, seed=5)


def uuids(records: list[dict[str, Any]]) -> set[str]:
    return {e["uuid"] for r in records for e in map_record(r).events}


def assert_resumes_from_last_state(
    records: list[dict[str, Any]],
    states: list[dict[str, Any]],
    stored_when_emitted: list[set[str]],
    config: dict[str, Any],
    tmp_path: Path,
    posthog: PostHogStandIn,
) -> None:
    """Every STATE a stopped run emitted vouched only for stored events, and a run resumed
    from the last one delivers all the rest."""
    for emitted, stored in zip(states, stored_when_emitted, strict=True):
        assert uuids(records[: emitted["done"]]) <= stored  # no STATE ahead of PostHog
    done = states[-1]["done"] if states else 0
    again = run_target(config, messages_with_states(records[done:], 20), tmp_path, posthog)
    assert again.returncode == 0, again.stderr
    assert {e["uuid"] for e in delivered(posthog)} == uuids(records)


def mappable(record: dict[str, Any]) -> bool:
    """What the target makes of a record: its kept-aside values back in place, then mapped."""
    try:
        map_record(with_extra_fields(record))
    except UnmappableError:
        return False
    return True


def delivered_prefix(records: list[dict[str, Any]], stored: set[str]) -> int:
    """How many leading records are fully stored."""
    for n, value in enumerate(records):
        if not uuids([value]) <= stored:
            return n
    return len(records)


def test_a_refused_event_is_dead_lettered_alone(
    tmp_path: Path, posthog: PostHogStandIn, records: list[dict[str, Any]]
) -> None:
    bad = records[37]["uuid"]
    posthog.reject_if(lambda event: event.get("uuid") == bad)
    run = run_target(
        target_config(tmp_path, posthog), messages_with_states(records, 50), tmp_path, posthog
    )
    assert run.returncode == 0, run.stderr
    assert {e["uuid"] for e in delivered(posthog)} == uuids(records) - {bad}
    (dead,) = [
        orjson.loads(line) for line in (tmp_path / "dead-letter.jsonl").read_bytes().splitlines()
    ]
    assert dead["event"]["uuid"] == bad
    assert dead["posthog_answer"] == f"event rejected: {dead['event']['event']}"
    assert "1 dead-lettered" in run.stderr
    assert run.states[-1] == {"done": len(records)}


def test_wrong_api_key_stops_at_once_and_says_so(
    tmp_path: Path, posthog: PostHogStandIn, records: list[dict[str, Any]]
) -> None:
    config = target_config(tmp_path, posthog, api_key="phc_wrong_key", concurrency=2)
    run = run_target(config, messages_with_states(records, 50), tmp_path, posthog)
    assert run.returncode == 1
    assert "PostHog refused the project API key (401)" in run.stderr
    assert run.states == []
    assert len(posthog.requests) <= 2  # no retries of a wrong key
    assert "phc_wrong_key" not in run.stderr + run.stdout


def test_outage_longer_than_the_retry_budget_fails_with_a_correct_state_then_resumes(
    tmp_path: Path, posthog: PostHogStandIn, records: list[dict[str, Any]]
) -> None:
    posthog.inject(Fault.delay(0), times=3)  # three batches get through ...
    posthog.inject(Fault.status(503), times=1000)  # ... then PostHog stays down
    config = target_config(tmp_path, posthog, concurrency=1, max_retries=2)
    run = run_target(config, messages_with_states(records, 20), tmp_path, posthog)
    assert run.returncode == 1
    assert "did not accept a batch after 3 attempts (last: PostHog answered 503)" in run.stderr

    prefix = delivered_prefix(records, posthog.accepted_uuids())
    assert 0 < prefix < len(records)
    assert run.states, "the STATE of what was delivered should have been emitted"
    assert run.states[-1] == {"done": prefix - prefix % 20}  # as far as is true, no further

    posthog.clear_faults()
    resumed = records[run.states[-1]["done"] :]
    again = run_target(config, messages_with_states(resumed, 20), tmp_path, posthog)
    assert again.returncode == 0, again.stderr
    assert {e["uuid"] for e in delivered(posthog)} == uuids(records)


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs POSIX file size limits")
def test_a_disk_that_refuses_the_registry_stops_clearly_then_resumes(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    records = tap_records(1000, seed=9)
    config = target_config(tmp_path, posthog, concurrency=1, batch_size=20)
    # The registry's write-ahead log (a claim per new device, aliases, person properties,
    # the ledger at each STATE)
    # outgrows the limit after a few batches.
    run = run_target(
        config, messages_with_states(records, 20), tmp_path, posthog,
        preexec_fn=file_size_limit(500_000),
    )  # fmt: skip
    assert run.returncode == 1
    # Written, or read while SQLite's log could not grow: which one comes first depends on
    # when the limit is met (a STATE's sync or the next claim).
    assert re.search(
        r"alias registry \S+ could not be (written|read \(disk I/O error\))", run.stderr
    )
    assert "check the disk it is on" in run.stderr
    assert "Traceback" not in run.stderr
    assert run.states[-1]["done"] < len(records), "the failed batch was vouched for"
    assert_resumes_from_last_state(
        records, run.states, run.stored_when_emitted, config, tmp_path, posthog
    )


def test_a_dead_letter_file_that_cannot_be_written_stops_clearly_naming_it(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    records = tap_records(100, seed=9, invalid_fraction=0.1)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    dead_letters = blocker / "dead-letter.jsonl"  # its folder is a file
    config = target_config(tmp_path, posthog, dead_letter_path=str(dead_letters))
    run = run_target(config, messages_with_states(records, 10), tmp_path, posthog)
    assert run.returncode == 1
    assert f"target-posthog failed: cannot read {dead_letters} (Not a directory)" in run.stderr
    assert "Traceback" not in run.stderr
    first_bad = next(n for n, r in enumerate(records) if not mappable(r))
    # No STATE vouches for the record whose dead letter could not be written.
    assert all(emitted["done"] <= first_bad for emitted in run.states)

    fixed = target_config(tmp_path, posthog, dead_letter_path=str(tmp_path / "dead.jsonl"))
    done = run.states[-1]["done"] if run.states else 0
    again = run_target(fixed, messages_with_states(records[done:], 10), tmp_path, posthog)
    assert again.returncode == 0, again.stderr
    assert {e["uuid"] for e in delivered(posthog)} == uuids([r for r in records if mappable(r)])


def test_a_state_reader_that_goes_away_stops_the_target_with_one_clear_line(
    tmp_path: Path, posthog: PostHogStandIn, records: list[dict[str, Any]]
) -> None:
    """Meltano (the reader of STATE) died: the target's next STATE meets a broken pipe."""
    process = start_target(target_config(tmp_path, posthog, batch_size=20), tmp_path)
    assert process.stdin is not None and process.stdout is not None
    assert process.stderr is not None
    process.stdout.close()
    with contextlib.suppress(BrokenPipeError):  # the target may stop before reading it all
        process.stdin.write(
            b"".join(orjson.dumps(m) + b"\n" for m in messages_with_states(records, 20))
        )
        process.stdin.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 1
    assert "target-posthog failed: cannot write STATE to stdout: nothing reads it" in stderr
    assert "Traceback" not in stderr


@pytest.mark.skipif(not hasattr(fcntl, "F_GETPIPE_SZ"), reason="Linux pipe sizes")
def test_the_target_enlarges_its_input_pipe_so_the_tap_can_run_ahead(
    tmp_path: Path, posthog: PostHogStandIn, records: list[dict[str, Any]]
) -> None:
    """With the default 64 KiB pipe the tap and the target take turns (benchmarks/README.md)."""
    process = start_target(target_config(tmp_path, posthog), tmp_path)
    assert process.stdin is not None
    watcher = StateWatcher(process, posthog)
    process.stdin.write(orjson.dumps(state({"first": True})) + b"\n")
    process.stdin.flush()
    assert watcher.wait_for_states(1)  # the target is reading its input by now
    size = fcntl.fcntl(process.stdin.fileno(), fcntl.F_GETPIPE_SZ)
    process.stdin.close()
    assert process.wait(timeout=60) == 0
    assert size >= 1 << 20


def test_large_states_come_out_whole_when_the_target_is_paused_mid_write(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """STATE lines far larger than a pipe's atomic write, emitted while the target is stopped
    and continued (SIGSTOP/SIGCONT) again and again and its reader lags: each line whole."""
    bookmarks = {f"stream_{n}": {"replication_key_value": "x" * 200} for n in range(2000)}
    states = [{"bookmarks": bookmarks, "n": n} for n in range(30)]  # ~450 KB each
    process = start_target(target_config(tmp_path, posthog), tmp_path)
    assert process.stdin is not None and process.stdout is not None

    def feed() -> None:
        assert process.stdin is not None
        for value in states:
            process.stdin.write(orjson.dumps(state(value)) + b"\n")
        process.stdin.close()

    def pause_again_and_again() -> None:
        for _ in range(60):
            time.sleep(0.02)
            if process.poll() is not None:
                return
            process.send_signal(signal.SIGSTOP)
            time.sleep(0.02)
            process.send_signal(signal.SIGCONT)

    threads = [threading.Thread(target=feed), threading.Thread(target=pause_again_and_again)]
    for thread in threads:
        thread.start()
    lines = []
    for line in process.stdout:
        time.sleep(0.01)  # a slow reader keeps the pipe full, so writes block (and get cut)
        lines.append(line)
    for thread in threads:
        thread.join(timeout=30)
    assert process.wait(timeout=60) == 0
    emitted = [orjson.loads(line) for line in lines]  # each line whole, or this raises
    # Each safe STATE is written at once, whole and in order, the last one always.
    assert emitted == [value for value in states if value in emitted]
    assert emitted[-1] == states[-1]
    assert len(emitted) >= 2


def test_unreachable_host_fails_clearly(tmp_path: Path, records: list[dict[str, Any]]) -> None:
    config = target_config(tmp_path, None, max_retries=1)
    run = run_target(config, messages_with_states(records[:10], 10), tmp_path)
    assert run.returncode == 1
    assert "did not accept a batch after 2 attempts (last: ConnectionError" in run.stderr
    assert run.states == []


def test_sigterm_settles_in_flight_batches_emits_safe_state_and_exits_non_zero(
    tmp_path: Path, records: list[dict[str, Any]]
) -> None:
    with PostHogStandIn(api_key=POSTHOG_KEY, latency=0.3) as posthog:
        config = target_config(tmp_path, posthog, batch_size=20, concurrency=2)
        process = start_target(config, tmp_path)
        watcher = StateWatcher(process, posthog)
        assert process.stdin is not None
        lines = messages_with_states(records, 20)
        process.stdin.write(b"".join(orjson.dumps(m) + b"\n" for m in lines))
        process.stdin.flush()  # input stays open: the target waits for more when signalled
        assert watcher.wait_for_states(1)
        returncode, stderr = send_signal_and_finish(process, signal.SIGTERM)
        watcher.join()
        assert returncode == 128 + signal.SIGTERM
        assert "stopping on signal 15" in stderr
        assert_resumes_from_last_state(
            records, watcher.states, watcher.snapshots, config, tmp_path, posthog
        )


def test_bad_records_are_dead_lettered_with_reasons_and_the_run_goes_on(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    mixed = tap_records(300, seed=9, invalid_fraction=0.1)
    huge = {
        **mixed[0],
        "uuid": "11111111-1111-4111-8111-111111111111",
        "event_properties": {"blob": "x" * 1_000_000},
    }
    mixed.append(huge)
    refused: dict[str, str] = {}
    for value in mixed[:-1]:
        try:
            map_record(with_extra_fields(value))
        except UnmappableError as exc:
            refused[value["uuid"]] = exc.reason
    assert len(refused) > 10
    run = run_target(
        target_config(tmp_path, posthog), messages_with_states(mixed, 100), tmp_path, posthog
    )
    assert run.returncode == 0, run.stderr
    dead = [
        orjson.loads(line) for line in (tmp_path / "dead-letter.jsonl").read_bytes().splitlines()
    ]
    assert {
        d["record"]["uuid"]: d["reason"] for d in dead[:-1] if "bytes" not in d["reason"]
    } == refused
    assert any(
        d["record"]["uuid"] == huge["uuid"] and "bytes once mapped" in d["reason"] for d in dead
    )
    sent = [r for r in mixed if r["uuid"] not in refused and r is not huge]
    assert {e["uuid"] for e in delivered(posthog)} == uuids(sent)
    assert run.states[-1] == {"done": len(mixed)}
    assert stat.S_IMODE((tmp_path / "dead-letter.jsonl").stat().st_mode) == 0o600


def test_too_large_requests_are_split(
    tmp_path: Path, posthog: PostHogStandIn, records: list[dict[str, Any]]
) -> None:
    posthog.max_body_bytes = 6000  # gzip bytes: a few events per request at most
    run = run_target(
        target_config(tmp_path, posthog), messages_with_states(records, 50), tmp_path, posthog
    )
    assert run.returncode == 0, run.stderr
    assert any(r.status == 413 for r in posthog.requests)
    assert {e["uuid"] for e in delivered(posthog)} == uuids(records)


def test_dry_run_writes_exact_payloads_and_sends_nothing(
    tmp_path: Path, posthog: PostHogStandIn, records: list[dict[str, Any]]
) -> None:
    payloads = tmp_path / "payloads.jsonl"
    config = target_config(tmp_path, posthog, dry_run_path=str(payloads))
    run = run_target(config, messages_with_states(records, 50), tmp_path, posthog)
    assert run.returncode == 0, run.stderr
    assert posthog.requests == []
    assert not (tmp_path / "aliases.sqlite").exists()  # a dry run never writes the registry
    lines = [orjson.loads(line) for line in payloads.read_bytes().splitlines()]
    assert all(set(line) == {"historical_migration", "batch"} for line in lines)
    assert all(line["historical_migration"] is True for line in lines)
    events = [e for line in lines for e in line["batch"]]
    expected = {e["uuid"]: e for r in records for e in map_record(r).events}
    assert {e["uuid"]: e for e in events if is_export_event(e)} == expected
    assert any(e["event"] == "$create_alias" for e in events)
    assert any(e["properties"].get(UPDATE_MARKER) == "person" for e in events)
    assert run.states == []  # nothing was sent: no bookmark may move
    assert stat.S_IMODE(payloads.stat().st_mode) == 0o600


def test_throttle_paces_requests_to_the_agreed_speed(
    tmp_path: Path, posthog: PostHogStandIn, records: list[dict[str, Any]]
) -> None:
    config = target_config(tmp_path, posthog, max_events_per_minute=6000, batch_size=1000)
    run = run_target(config, messages_with_states(records, 200), tmp_path, posthog)
    assert run.returncode == 0, run.stderr
    requests = posthog.requests
    assert max(r.event_count for r in requests) <= 100  # one second's worth per request
    sent = sum(r.event_count for r in requests)
    # A lower bound only (a slow machine can only take longer): the rate was never exceeded.
    span = requests[-1].received_at - requests[0].received_at
    assert span >= 0.9 * (sent - requests[0].event_count) / 100


def test_bad_config_is_reported_one_line_each_before_any_work(tmp_path: Path) -> None:
    config_path = tmp_path / "config.json"
    config_path.write_text(
        orjson.dumps(
            {
                "api_key": POSTHOG_KEY,
                "host": "http://posthog.example.com",
                "bogus_setting": 1,
                "concurrency": 0,
            }
        ).decode()
    )
    result = subprocess.run(
        [str(TARGET), "--config", str(config_path)],
        input=b"",
        capture_output=True,
        timeout=60,
        check=False,
    )
    stderr = result.stderr.decode()
    assert result.returncode == 1
    assert "host 'http://posthog.example.com' must use https" in stderr
    assert "unknown setting 'bogus_setting'" in stderr
    assert "concurrency" in stderr
    assert POSTHOG_KEY not in stderr + result.stdout.decode()


def test_secrets_never_appear_in_any_output(
    tmp_path: Path, posthog: PostHogStandIn, records: list[dict[str, Any]]
) -> None:
    posthog.inject(Fault.status(503))
    posthog.reject_if(lambda event: event.get("uuid") == records[3]["uuid"])
    mixed = [*records[:50], {**records[60], "event_type": None}]
    real = run_target(
        target_config(tmp_path, posthog), messages_with_states(mixed, 25), tmp_path, posthog
    )
    dry = run_target(
        target_config(tmp_path, posthog, dry_run_path=str(tmp_path / "dry.jsonl")),
        messages_with_states(mixed, 25),
        tmp_path,
        posthog,
    )
    about = subprocess.run(
        [str(TARGET), "--about", "--format=json"], capture_output=True, timeout=60, check=True
    )
    assert real.returncode == 0 and dry.returncode == 0
    outputs = [
        real.stdout,
        real.stderr,
        dry.stdout,
        dry.stderr,
        about.stdout.decode(),
        about.stderr.decode(),
    ]
    outputs += [
        path.read_bytes().decode(errors="replace")
        for path in tmp_path.iterdir()
        if path.is_file() and not path.name.startswith("target-config")
    ]
    assert len(outputs) > 8
    for output in outputs:
        assert POSTHOG_KEY not in output
    assert repr(POSTHOG_KEY) not in repr(real)


def test_state_before_any_record_is_passed_through(tmp_path: Path, posthog: PostHogStandIn) -> None:
    run = run_target(
        target_config(tmp_path, posthog),
        [SCHEMA, state({"a": 1}), record(tap_records(1)[0])],
        tmp_path,
        posthog,
    )
    assert run.returncode == 0, run.stderr
    assert run.states == [{"a": 1}]


def test_sigterm_while_waiting_for_the_last_batches_exits_non_zero_with_a_safe_state(
    tmp_path: Path, posthog: PostHogStandIn, records: list[dict[str, Any]]
) -> None:
    posthog.inject(Fault.delay(0), times=2)
    posthog.inject(Fault.delay(3), times=50)  # then slow: input ends long before delivery
    # 90 records = 95 events = 5 batches: two fast, two in flight and one queued when the
    # input ends (no backpressure on the input), so the signal finds a batch never sent.
    config = target_config(tmp_path, posthog, batch_size=20, concurrency=2)
    process = start_target(config, tmp_path)
    watcher = StateWatcher(process, posthog)
    assert process.stdin is not None and process.stderr is not None
    lines = messages_with_states(records[:90], 20)
    process.stdin.write(b"".join(orjson.dumps(m) + b"\n" for m in lines))
    process.stdin.close()
    stderr_lines: list[str] = []
    for line in process.stderr:  # wait until the target has read all its input
        stderr_lines.append(line.decode())
        if "completed processing" in stderr_lines[-1]:
            break
    # The signal is meant for the slow tail: wait for the fast batches' STATE (bounded).
    deadline = time.monotonic() + 20
    while not watcher.states and time.monotonic() < deadline:
        time.sleep(0.05)
    returncode, rest = send_signal_and_finish(process, signal.SIGTERM)
    watcher.join()
    stderr = "".join(stderr_lines) + rest
    assert returncode == 128 + signal.SIGTERM, stderr
    assert "stopping on signal 15 while finishing" in stderr
    assert watcher.states[-1]["done"] < 90
    for emitted, stored in zip(watcher.states, watcher.snapshots, strict=True):
        assert uuids(records[: emitted["done"]]) <= stored


def test_an_unusable_alias_registry_stops_before_any_work(
    tmp_path: Path, posthog: PostHogStandIn, records: list[dict[str, Any]]
) -> None:
    (tmp_path / "aliases.sqlite").write_bytes(b"this is not a SQLite database" * 100)
    run = run_target(
        target_config(tmp_path, posthog), messages_with_states(records[:5], 5), tmp_path, posthog
    )
    assert run.returncode == 1
    assert "target-posthog cannot start: alias registry" in run.stderr
    assert "file is not a database" in run.stderr
    assert posthog.requests == []
    assert run.states == []


def test_after_a_stop_request_the_target_reads_its_input_until_it_goes_quiet(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """Meltano forwards what the tap wrote before it stopped; the target must outlive that, or
    Meltano 4.4 stops forwarding and waits for the tap's unread output forever."""
    config = target_config(tmp_path, posthog, max_events_per_minute=600)
    process = start_target(config, tmp_path)
    assert process.stdin is not None and process.stderr is not None
    line = orjson.dumps(record(tap_records(1)[0])) + b"\n"
    process.stdin.write(orjson.dumps(SCHEMA) + b"\n")
    writing = threading.Event()
    writing.set()
    broken: list[float] = []

    def tap_still_writing() -> None:
        try:
            while writing.is_set():
                process.stdin.write(line * 50)  # type: ignore[union-attr]
                process.stdin.flush()  # type: ignore[union-attr]
        except BrokenPipeError:
            broken.append(time.monotonic())

    feeder = threading.Thread(target=tap_still_writing, daemon=True)
    feeder.start()
    time.sleep(3)
    process.send_signal(signal.SIGINT)
    time.sleep(3)  # the target has stopped and said so, but the input still flows
    assert process.poll() is None and not broken
    writing.clear()
    quiet_since = time.monotonic()
    feeder.join(timeout=10)
    process.wait(timeout=QUIET_SECONDS + 10)
    assert process.returncode == 128 + signal.SIGINT
    assert time.monotonic() - quiet_since < QUIET_SECONDS + 5
    assert not broken  # it never hung up on what wrote to it
    assert "target-posthog stopped on SIGINT" in process.stderr.read().decode()


def test_input_that_ends_without_any_state_is_not_reported_done(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """A tap that stops early (Amplitude refused its keys) sends no STATE: the target's last
    line must not read "done" under the tap's cause line; with a STATE it does."""
    records = tap_records(3)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cut_short = run_target(
        target_config(tmp_path / "a", posthog), [SCHEMA, *map(record, records)], tmp_path / "a"
    )
    assert cut_short.returncode == 0, cut_short.stderr
    *_, summary, last = cut_short.stderr.strip().splitlines()
    assert "input ended: 3 events sent" in summary
    assert last.endswith(
        "the tap stopped before it finished (its line above says why): no STATE came, "
        "no bookmark moved"
    )
    assert "done:" not in cut_short.stderr
    whole = run_target(
        target_config(tmp_path / "b", posthog),
        [SCHEMA, *map(record, records), state({"bookmarks": {}})],
        tmp_path / "b",
    )
    assert "done: " in whole.stderr.strip().splitlines()[-1]
    assert "the tap stopped before it finished" not in whole.stderr


def test_a_stop_while_posthog_is_slow_ends_within_seconds_and_resumes_whole(
    tmp_path: Path, records: list[dict[str, Any]]
) -> None:
    """Requests in flight get a short grace (ending.STOP_GRACE_SECONDS), not request_timeout: a slow
    PostHog made a stop wait up to 30 s (a container's whole grace period). What was not
    confirmed is sent again by the next run, with the same uuids."""
    with PostHogStandIn(api_key=POSTHOG_KEY) as posthog:
        posthog.inject(Fault.delay(15), times=2)  # the first two requests: far past the grace
        config = target_config(tmp_path, posthog, batch_size=20, concurrency=2, request_timeout=12)
        process = start_target(config, tmp_path)
        watcher = StateWatcher(process, posthog)
        assert process.stdin is not None
        lines = messages_with_states(records, 20)
        process.stdin.write(b"".join(orjson.dumps(m) + b"\n" for m in lines))
        process.stdin.flush()
        time.sleep(1.0)  # both requests are now waiting for the stand-in
        process.send_signal(signal.SIGTERM)
        # Bounded: the old code waited request_timeout + 1 (13 s) for the two requests.
        returncode = process.wait(timeout=10)
        assert process.stderr is not None
        stderr = process.stderr.read().decode()
        watcher.join()
        assert returncode == 128 + signal.SIGTERM, stderr
        assert "Traceback" not in stderr
        assert_resumes_from_last_state(
            records, watcher.states, watcher.snapshots, config, tmp_path, posthog
        )


def test_a_429_is_said_when_it_comes_with_the_wait_not_after_the_wait(
    tmp_path: Path, posthog: PostHogStandIn, records: list[dict[str, Any]]
) -> None:
    """A long Retry-After was logged only once waited out: the run looked stalled, and a stop
    during the wait left no trace of the 429 at all."""
    posthog.inject(Fault.status(429, retry_after=40), times=1)
    config = target_config(tmp_path, posthog, batch_size=20, concurrency=1)
    process = start_target(config, tmp_path)
    assert process.stdin is not None and process.stderr is not None
    lines = messages_with_states(records[:20], 20)
    process.stdin.write(b"".join(orjson.dumps(m) + b"\n" for m in lines))
    process.stdin.flush()
    said: list[str] = []
    for raw in process.stderr:  # the line comes at once (the old code: after 40 s)
        said.append(raw.decode())
        if "retrying a batch" in said[-1]:
            break
    assert "retrying a batch: PostHog answered 429; retrying in 40 s" in said[-1], said[-5:]
    returncode, _ = send_signal_and_finish(process, signal.SIGTERM)
    assert returncode == 128 + signal.SIGTERM
