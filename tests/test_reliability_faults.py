"""Faults on both sides of the whole pipeline (`tap | target`): Amplitude and PostHog
misbehave, the alias registry is held by another process; nothing is lost, re-sends are the
same PostHog events, and a run that cannot finish says why and resumes from a correct STATE.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from target_posthog.registry import AliasRegistry

from tests.pipeline_harness import (
    DRILL_HOURS,
    DRILL_START,
    Pipeline,
    PipelineResult,
    alias_copies,
    amplitude,
    assert_aliases_once,
    assert_delivered_exactly,
    assert_registry_intact,
    drill_store,
    event_uuid_counts,
    pipeline,
    posthog,
    registry_pairs,
)
from tests.testbed.amplitude import AmplitudeStandIn
from tests.testbed.faults import Fault
from tests.testbed.posthog import PostHogStandIn
from tests.testbed.store import ExportStore

__all__ = ["amplitude", "drill_store", "pipeline", "posthog"]  # fixtures used by name

pytestmark = pytest.mark.timeout(120)


def assert_complete_without_resends(
    result: PipelineResult, posthog: PostHogStandIn, store: ExportStore
) -> None:
    assert result.ok, result.describe()
    assert result.bookmark == (DRILL_START + timedelta(hours=DRILL_HOURS)).isoformat()
    assert_delivered_exactly(posthog, store)
    assert_aliases_once(posthog, store)


def uuids_stored_before(posthog: PostHogStandIn, store: ExportStore, bookmark: str) -> None:
    """Everything a STATE vouches for (uploaded before its bookmark) is stored in PostHog."""
    stored = set(event_uuid_counts(posthog))
    vouched = {
        r["uuid"]
        for r in store.iter_events()
        if r["server_upload_time"].replace(" ", "T") + "+00:00" < bookmark
    }
    missing = vouched - stored
    assert not missing, f"the STATE vouches for {len(missing)} events PostHog never stored"


# --- Amplitude --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault.status(500),
        Fault.status(502),
        Fault.status(503),
        Fault.status(429, retry_after=0.2),
        Fault.delay(2.5),  # past the tap's 1 s request_timeout
        Fault.drop(),
        Fault.truncate(),
        Fault.stall(2.5),  # half the archive, then silence past the 1 s request_timeout
    ],
    ids=[
        "500", "502", "503", "429-retry-after", "slow-past-timeout", "dropped", "truncated",
        "stalled-mid-body",
    ],
)  # fmt: skip
def test_amplitude_faults_are_retried_and_lose_nothing(
    fault: Fault,
    pipeline: Pipeline,
    amplitude: AmplitudeStandIn,
    posthog: PostHogStandIn,
    drill_store: ExportStore,
) -> None:
    pipeline.tap_config["request_timeout"] = 1
    amplitude.inject(Fault.delay(0), times=3)  # three windows go through, then two faults
    amplitude.inject(fault, times=2)
    result = pipeline.run()
    assert_complete_without_resends(result, posthog, drill_store)
    # The tap never emits records of a failed download, so PostHog gets each event once.
    assert max(event_uuid_counts(posthog).values()) == 1
    assert "retry 2 of 3" in result.tap_stderr
    if fault.kind == "delay":
        return  # the stand-in logs a delayed request only once it answers, after the run
    if fault.kind == "stall":
        assert "Read timed out" in result.tap_stderr  # the timeout, not the end of the body
    faulted = [r for r in amplitude.requests if r.fault == fault]
    assert len(faulted) == 2
    if fault.retry_after:
        after = [r for r in amplitude.requests if r.received_at > faulted[0].received_at]
        assert after[0].received_at - faulted[0].received_at >= fault.retry_after


# Export sizes of the drill store: one hour 3.5-26.6 kB, two hours 8-50 kB, four 19-89 kB.
@pytest.mark.parametrize("limit", [26_700, 40_000, 50_000, 90_000], ids=lambda n: f"{n}B")
def test_exports_too_large_at_every_size_are_split_and_lose_nothing(
    limit: int,
    pipeline: Pipeline,
    amplitude: AmplitudeStandIn,
    posthog: PostHogStandIn,
    drill_store: ExportStore,
) -> None:
    pipeline.tap_config["window_hours"] = 8
    amplitude.max_export_bytes = limit
    result = pipeline.run()
    assert_complete_without_resends(result, posthog, drill_store)
    refused = [r for r in amplitude.requests if r.status == 400]
    assert refused, "the limit should have refused some window"
    # Whatever the limit, every hour of data was served by a request within it.
    for hour in drill_store.hours():
        assert any(r.status == 200 and r.start <= hour <= r.end for r in amplitude.requests), (
            f"hour {hour} never served"
        )


def test_an_hour_too_large_even_alone_stops_before_it_then_resumes(
    pipeline: Pipeline,
    amplitude: AmplitudeStandIn,
    posthog: PostHogStandIn,
    drill_store: ExportStore,
) -> None:
    hours = drill_store.hours()
    sizes = {hour: drill_store.export_bytes(hour, hour) for hour in hours}
    # The limit lets the first hours through and refuses the first hour above it.
    limit = max(sizes[h] for h in hours[:4])
    too_large = next(h for h in hours if sizes[h] > limit)
    amplitude.max_export_bytes = limit
    failed = pipeline.run()
    assert failed.tap_returncode != 0 and failed.target_returncode == 0, failed.describe()
    assert too_large.strftime("%Y-%m-%dT%H") in failed.tap_stderr.replace(" ", "T")
    assert failed.bookmark is not None and failed.bookmark <= too_large.isoformat()
    uuids_stored_before(posthog, drill_store, failed.bookmark)

    amplitude.max_export_bytes = None
    resumed = pipeline.run(failed.last_state)
    assert_complete_without_resends(resumed, posthog, drill_store)


# --- PostHog ----------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [500, 502, 503, 504])
def test_posthog_5xx_are_retried_and_lose_nothing(
    code: int, pipeline: Pipeline, posthog: PostHogStandIn, drill_store: ExportStore
) -> None:
    posthog.inject(Fault.delay(0), times=5)
    posthog.inject(Fault.status(code), times=3)
    result = pipeline.run()
    assert_complete_without_resends(result, posthog, drill_store)
    assert max(event_uuid_counts(posthog).values()) == 1  # a 5xx stored nothing


def test_posthog_slow_past_request_timeout_is_retried_and_the_late_copy_collapses(
    pipeline: Pipeline, posthog: PostHogStandIn, drill_store: ExportStore
) -> None:
    """The target gives up waiting and resends; PostHog stores the slow copy too, with the
    same uuids, so the two collapse."""
    pipeline.target_config["request_timeout"] = 1
    posthog.inject(Fault.delay(0), times=3)
    posthog.inject(Fault.delay(1.5), times=2)
    result = pipeline.run()
    assert "retrying a batch: ReadTimeout" in result.target_stderr
    # The stand-in logs (and stores) a slow request once its delay is over.
    deadline = time.monotonic() + 10
    while len(slow := [r for r in posthog.requests if r.fault == Fault.delay(1.5)]) < 2:
        assert time.monotonic() < deadline, "the slow requests never completed"
        time.sleep(0.05)
    for request in slow:
        assert request.stored
        assert any(r.uuids == request.uuids and r.seq != request.seq for r in posthog.requests)
    assert_complete_without_resends(result, posthog, drill_store)  # the late copies collapse


def test_posthog_429_storm_honours_retry_after_without_a_hot_loop(
    pipeline: Pipeline, posthog: PostHogStandIn, drill_store: ExportStore
) -> None:
    retry_after = 0.3
    storm = 8
    posthog.inject(Fault.delay(0), times=3)
    posthog.inject(Fault.status(429, retry_after=retry_after), times=storm)
    result = pipeline.run()
    assert_complete_without_resends(result, posthog, drill_store)
    requests = posthog.requests
    throttled = [r for r in requests if r.status == 429]
    assert len(throttled) == storm
    for answer in throttled:
        # The same batch (same uuids) came back no sooner than PostHog asked.
        again = [r for r in requests if r.uuids == answer.uuids and r.seq > answer.seq]
        assert again, "a throttled batch was never retried"
        assert again[0].received_at - answer.received_at >= retry_after
    delivered_batches = sum(1 for r in requests if r.status == 200)
    assert len(requests) == delivered_batches + storm, "requests beyond one retry per 429"


def test_posthog_413_splits_the_batch_and_loses_nothing(
    pipeline: Pipeline, posthog: PostHogStandIn, drill_store: ExportStore
) -> None:
    posthog.max_body_bytes = 4_000  # gzip bodies of 40 events are ~8-12 kB
    result = pipeline.run()
    assert_complete_without_resends(result, posthog, drill_store)
    refused = [r for r in posthog.requests if r.status == 413]
    assert refused
    assert "0 dead-lettered" in result.target_stderr


def test_posthog_lost_acknowledgements_are_resent_with_the_same_uuids(
    pipeline: Pipeline, posthog: PostHogStandIn, drill_store: ExportStore
) -> None:
    posthog.inject(Fault.delay(0), times=4)
    posthog.inject(Fault.lose_ack(), times=3)
    result = pipeline.run()
    assert_complete_without_resends(result, posthog, drill_store)
    requests = posthog.requests
    lost = [r for r in requests if r.fault == Fault.lose_ack()]
    assert len(lost) == 3
    for request in lost:
        assert request.stored
        resent = [r for r in requests if r.seq > request.seq and r.uuids == request.uuids]
        assert any(r.status == 200 for r in resent), "the resend must carry the same uuids"
    counts = event_uuid_counts(posthog)
    assert sum(n - 1 for n in counts.values()) > 0  # the duplicates exist, and collapsed above


def test_posthog_down_past_the_retry_budget_fails_clearly_then_resumes(
    pipeline: Pipeline, posthog: PostHogStandIn, drill_store: ExportStore
) -> None:
    pipeline.target_config.update(max_retries=2, concurrency=1)
    posthog.inject(Fault.delay(0), times=8)  # some batches get through ...
    posthog.inject(Fault.status(503), times=1_000)  # ... then PostHog stays down
    failed = pipeline.run()
    assert failed.target_returncode != 0, failed.describe()
    assert "PostHog" in failed.target_stderr
    assert "after 3 attempts (last: PostHog answered 503)" in failed.target_stderr
    assert "Traceback" not in failed.target_stderr
    assert failed.bookmark is not None, "the STATE of what was delivered should be emitted"
    uuids_stored_before(posthog, drill_store, failed.bookmark)
    failures = sum(1 for r in posthog.requests if r.status == 503)
    assert failures == 3, "one batch, its retry budget, then stop"

    posthog.clear_faults()
    resumed = pipeline.run(failed.last_state)
    assert_complete_without_resends(resumed, posthog, drill_store)


# --- the alias registry ---------------------------------------------------------------------


@pytest.mark.parametrize("moment", ["at-start", "mid-run"])
def test_registry_locked_by_another_process_is_waited_for_and_stays_intact(
    moment: str, pipeline: Pipeline, posthog: PostHogStandIn, drill_store: ExportStore
) -> None:
    """Another process holds an open write transaction on the registry for a second, as the
    target opens it or as it records its first aliases: the target waits (SQLite's busy
    timeout) and loses nothing. (Held past that timeout, the target stops with one line
    naming the registry: see test_target_registry.py.)"""
    registry = Path(pipeline.target_config["alias_registry"])
    AliasRegistry(registry).close()  # an existing registry (WAL mode), as after a first run
    other = sqlite3.connect(registry, isolation_level=None, check_same_thread=False)
    release = threading.Timer(1.0, lambda: other.execute("ROLLBACK"))

    def hold_the_write_lock() -> None:
        other.execute("BEGIN IMMEDIATE")
        other.execute("DELETE FROM shared_devices WHERE 0")
        release.start()

    if moment == "at-start":
        hold_the_write_lock()
    else:  # PostHog has the first batch (with aliases): its registry write meets the lock
        posthog.on_received = lambda seq: hold_the_write_lock() if seq == 1 else None
    try:
        result = pipeline.run()
    finally:
        posthog.on_received = None
        release.cancel()  # a no-op once it has run
        if release.is_alive():
            release.join(timeout=5)
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()
    assert_complete_without_resends(result, posthog, drill_store)
    assert_registry_intact(registry)
    assert registry_pairs(registry) == set(alias_copies(posthog))
