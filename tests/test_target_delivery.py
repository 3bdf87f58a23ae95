"""The real `target-posthog` CLI against the PostHog stand-in: delivery, aliases and STATE."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from target_posthog.identity import can_alias
from target_posthog.mapping import map_record

from tests.target_support import (
    POSTHOG_KEY,
    SCHEMA,
    START,
    StateWatcher,
    delivered,
    is_export_event,
    messages_with_states,
    posthog,
    record,
    run_target,
    start_target,
    state,
    tap_records,
    target_config,
)
from tests.testbed.faults import Fault
from tests.testbed.generator import ExportSpec, generate_events
from tests.testbed.posthog import PostHogStandIn

__all__ = ["posthog"]  # a fixture, used by name


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    generated = tap_records(400, seed=11)
    # A family tablet: two people log in on one device (PostHog cannot tie it to both).
    template = next(r for r in generated if r.get("user_id") and r.get("device_id"))
    shared = [
        {
            **template,
            "uuid": f"00000000-0000-4000-8000-00000000000{n}",
            "user_id": user,
            "device_id": "family-tablet",
        }
        for n, user in enumerate(("mum", "dad", "mum"))
    ]
    return generated[:200] + shared + generated[200:]


def expected_pairs(records: list[dict[str, Any]]) -> dict[str, str]:
    """device -> the first user it shows with (input order), for pairs PostHog can merge."""
    owner: dict[str, str] = {}
    for value in records:
        device, user = value.get("device_id"), value.get("user_id")
        if device and user and can_alias(device, user):
            owner.setdefault(device, user)
    return owner


def shared_device_pairs(records: list[dict[str, Any]]) -> set[tuple[str, str]]:
    owner = expected_pairs(records)
    return {
        (r["device_id"], r["user_id"])
        for r in records
        if r.get("device_id") in owner
        and r.get("user_id")
        and owner[r["device_id"]] != r["user_id"]
    }


def test_every_record_arrives_once_exactly_as_mapped(
    tmp_path: Path, posthog: PostHogStandIn, records: list[dict[str, Any]]
) -> None:
    run = run_target(
        target_config(tmp_path, posthog), messages_with_states(records, 100), tmp_path, posthog
    )
    assert run.returncode == 0, run.stderr

    expected = {e["uuid"]: e for r in records for e in map_record(r).events}
    arrived = delivered(posthog)
    assert Counter(e["uuid"] for e in arrived) == Counter(expected.keys())
    for event in arrived:
        # name, distinct_id, timestamp, uuid, $set and every property, exactly
        assert event == expected[event["uuid"]]
        assert "sent_at" not in event
    requests = posthog.requests
    assert requests and all(r.historical_migration and r.gzip and r.status == 200 for r in requests)
    assert run.states[-1] == {"done": len(records)}


def test_one_alias_per_device_user_pair_and_none_on_rerun(
    tmp_path: Path, posthog: PostHogStandIn, records: list[dict[str, Any]]
) -> None:
    config = target_config(tmp_path, posthog)
    first = run_target(config, messages_with_states(records, 100), tmp_path, posthog)
    assert first.returncode == 0, first.stderr

    aliases = posthog.aliases()
    pairs = Counter((a["properties"]["alias"], a["distinct_id"]) for a in aliases)
    assert dict(pairs) == dict.fromkeys(expected_pairs(records).items(), 1)
    assert {a["event"] for a in aliases} == {"$create_alias"}
    # Timestamped at the first event that showed the pair, and sent no later than it.
    first_seen: dict[tuple[str, str], str] = {}
    for value in records:
        key = (value.get("device_id"), value.get("user_id"))
        if key in pairs:
            first_seen.setdefault(key, map_record(value).timestamp)  # type: ignore[arg-type]
    assert {(a["properties"]["alias"], a["distinct_id"]): a["timestamp"] for a in aliases} == (
        first_seen
    )
    shared = shared_device_pairs(records)
    assert shared, "the generator should produce shared devices"
    assert f"{len(shared)} shared-device conflicts" in first.stderr

    rerun = run_target(config, messages_with_states(records, 100), tmp_path, posthog)
    assert rerun.returncode == 0, rerun.stderr
    assert len(posthog.aliases()) == len(aliases), "an alias was sent again on a rerun"
    assert "0 aliases" in rerun.stderr


def test_state_never_runs_ahead_of_confirmed_delivery(
    tmp_path: Path, records: list[dict[str, Any]]
) -> None:
    with PostHogStandIn(api_key=POSTHOG_KEY, latency=0.02) as posthog:
        # Slow answers and some failures, so batches finish out of order.
        posthog.inject(Fault.delay(0.2), times=3)
        posthog.inject(Fault.status(503), times=2)
        posthog.inject(Fault.delay(0.1), times=2)
        # Small batches: each safe STATE is written at once, so this gives several along the
        # way.
        config = target_config(tmp_path, posthog, batch_size=10, concurrency=4)
        run = run_target(config, messages_with_states(records, 30), tmp_path, posthog)
    assert run.returncode == 0, run.stderr
    done = [s["done"] for s in run.states]
    assert done == sorted(done) and done[-1] == len(records)
    assert len(done) > 3, "STATE should be emitted as delivery progresses, not only at the end"
    for emitted, stored in zip(run.states, run.stored_when_emitted, strict=True):
        before = {e["uuid"] for r in records[: emitted["done"]] for e in map_record(r).events}
        assert before <= stored, f"STATE {emitted} was emitted before its records were stored"


def test_state_is_emitted_while_input_is_still_open(
    tmp_path: Path, posthog: PostHogStandIn, records: list[dict[str, Any]]
) -> None:
    process = start_target(target_config(tmp_path, posthog), tmp_path)
    watcher = StateWatcher(process, posthog)
    assert process.stdin is not None
    lines = [SCHEMA, *(record(r) for r in records[:60]), state({"done": 60})]
    process.stdin.write(b"".join(orjson.dumps(m) + b"\n" for m in lines))
    process.stdin.flush()
    try:
        assert watcher.wait_for_states(1), "no STATE until the input ended"
        assert watcher.states == [{"done": 60}]
        assert {r["uuid"] for r in records[:60]} <= watcher.snapshots[0]
    finally:
        process.stdin.close()
        assert process.wait(timeout=30) == 0


@pytest.mark.parametrize(
    "fault",
    [
        Fault.status(429, retry_after=0.05),
        Fault.status(500),
        Fault.status(503),
        Fault.drop(),
        Fault.delay(6),  # past request_timeout (5 s): a timeout, then a resend
    ],
)
def test_injected_faults_lose_nothing(
    tmp_path: Path, posthog: PostHogStandIn, records: list[dict[str, Any]], fault: Fault
) -> None:
    posthog.inject(fault, times=2)
    run = run_target(
        target_config(tmp_path, posthog), messages_with_states(records, 100), tmp_path, posthog
    )
    assert run.returncode == 0, run.stderr
    expected = {e["uuid"] for r in records for e in map_record(r).events}
    assert {e["uuid"] for e in delivered(posthog)} == expected
    assert "retrying a batch" in run.stderr
    assert run.states[-1] == {"done": len(records)}


def test_lost_acknowledgement_resend_carries_the_same_uuids(
    tmp_path: Path, posthog: PostHogStandIn, records: list[dict[str, Any]]
) -> None:
    posthog.inject(Fault.lose_ack())
    run = run_target(
        target_config(tmp_path, posthog, concurrency=1),
        messages_with_states(records, 100),
        tmp_path,
        posthog,
    )
    assert run.returncode == 0, run.stderr
    first, second = posthog.requests[0], posthog.requests[1]
    assert first.status is None and first.stored  # stored, answer lost
    assert second.uuids == first.uuids  # the resend is the very same batch
    assert posthog.duplicate_uuid_count == first.event_count
    unique = [e for e in posthog.unique_events() if is_export_event(e)]
    assert len(unique) == len({e["uuid"] for r in records for e in map_record(r).events})


def test_raw_amplitude_times_from_other_taps_are_accepted(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    raw = list(generate_events(ExportSpec(start=START, hours=2, events=50, seed=3)))
    assert " " in raw[0]["event_time"]  # Amplitude's own form, not RFC 3339
    run = run_target(
        target_config(tmp_path, posthog), messages_with_states(raw, 50), tmp_path, posthog
    )
    assert run.returncode == 0, run.stderr
    timestamps = {e["uuid"]: e["timestamp"] for e in delivered(posthog)}
    for value in raw:
        date, clock = value["event_time"].split(" ")
        assert timestamps[value["uuid"]] == f"{date}T{clock}+00:00"


def test_stream_maps_still_work_through_singer_sdks_own_record_path(
    tmp_path: Path, posthog: PostHogStandIn, records: list[dict[str, Any]]
) -> None:
    config = target_config(
        tmp_path, posthog, stream_maps={"events": {"__filter__": "event_type != 'session_start'"}}
    )
    run = run_target(config, messages_with_states(records, 100), tmp_path, posthog)
    assert run.returncode == 0, run.stderr
    kept = [r for r in records if r["event_type"] != "session_start"]
    assert len(kept) < len(records)
    expected = {e["uuid"]: e for r in kept for e in map_record(r).events}
    arrived = delivered(posthog)
    assert {e["uuid"]: e for e in arrived} == expected
    assert len(arrived) == len(expected)
    assert run.states[-1] == {"done": len(records)}
