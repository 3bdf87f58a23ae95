"""Crash drills on the whole pipeline: SIGKILL the tap, the target or both at seeded moments,
resume the same command from the last STATE Meltano would have stored, and check by uuid that
nothing was lost and no alias was sent twice (but as the same PostHog event, which collapses).
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from target_posthog.identity import alias_event

from tests.pipeline_harness import (
    DRILL_START,
    FIGURES,
    RUN_TIMEOUT_SECONDS,
    KillSwitch,
    Pipeline,
    PipelineResult,
    ResumePoint,
    Which,
    amplitude,
    assert_aliases_once,
    assert_delivered_exactly,
    drill_store,
    event_uuid_counts,
    pipeline,
    posthog,
)
from tests.testbed.amplitude import AmplitudeStandIn
from tests.testbed.faults import Fault
from tests.testbed.posthog import CaptureRequest, PostHogStandIn
from tests.testbed.store import ExportStore

__all__ = ["amplitude", "drill_store", "pipeline", "posthog"]  # fixtures used by name

SEED = 20261129
_rng = random.Random(SEED)


@dataclass(frozen=True)
class KillPoint:
    """Where a drill kills: `moment` names the trigger, `at` its seeded ordinal."""

    which: Which
    moment: str
    at: int

    @property
    def id(self) -> str:
        return f"{self.which}-{self.moment}-{self.at}"


# Twelve windows of ~100 events -> 12 export requests, ~35 PostHog batches of 40 events.
KILL_POINTS = [
    # during a download: the tap waits on a slow export answer (Fault.delay)
    KillPoint("tap", "download", _rng.randint(2, 6)),
    KillPoint("both", "download", _rng.randint(7, 11)),
    # mid-archive: the tap has emitted some of a window's records, not its STATE
    KillPoint("tap", "records", _rng.randint(30, 500)),
    KillPoint("tap", "records", _rng.randint(600, 1150)),
    # mid-batch: PostHog has a batch in hand and has not stored it yet
    KillPoint("target", "batch_received", _rng.randint(2, 12)),
    KillPoint("both", "batch_received", _rng.randint(13, 25)),
    # after delivery, before STATE: PostHog stored the batch, its answer never arrives
    KillPoint("target", "batch_stored", _rng.randint(2, 12)),
    KillPoint("target", "batch_stored", _rng.randint(13, 25)),
    KillPoint("both", "batch_stored", _rng.randint(5, 20)),
    # ... a batch carrying aliases: the registry cannot have recorded them
    KillPoint("target", "alias_stored", _rng.randint(1, 6)),
    # right after the target's n-th STATE line
    KillPoint("target", "state", _rng.randint(2, 9)),
    KillPoint("tap", "state", _rng.randint(2, 9)),
]


def alias_uuids(store: ExportStore) -> set[str]:
    """The uuid of every alias the export could produce (it depends only on the pair)."""
    return {
        alias_event(r["device_id"], r["user_id"], "")["uuid"]
        for r in store.iter_events()
        if r.get("device_id") and r.get("user_id")
    }


def start_killed_run(
    point: KillPoint,
    pipeline: Pipeline,
    amplitude: AmplitudeStandIn,
    posthog: PostHogStandIn,
    store: ExportStore,
    state: dict | None = None,
) -> tuple[PipelineResult, KillSwitch]:
    """One run of the pipeline that dies at `point`."""
    switch = KillSwitch(point.which)
    # Slower PostHog answers keep batches in flight when the kill lands.
    posthog.latency = 0.02
    # Ordinals count from this run's first request (the stand-ins number across runs).
    export_base, batch_base = len(amplitude.requests), len(posthog.requests)
    if point.moment == "download":
        if point.at > 1:
            amplitude.inject(Fault.delay(0), times=point.at - 1)
        amplitude.inject(Fault.delay(5))
        amplitude.on_received = lambda n: switch.fire() if n - export_base == point.at else None
    elif point.moment == "batch_received":
        posthog.on_received = lambda seq: switch.fire() if seq - batch_base == point.at else None
    elif point.moment == "batch_stored":
        posthog.on_stored = lambda r: switch.fire() if r.seq - batch_base == point.at else None
    elif point.moment == "alias_stored":
        on_alias = alias_batch_trigger(alias_uuids(store), point.at, switch.fire)
        posthog.on_stored = on_alias
    running = pipeline.start(
        state, kill_tap_after_records=point.at if point.moment == "records" else None
    )
    if point.moment == "records":
        switch.fired.set()  # the relay kills the tap itself, after exactly `at` records
    switch.arm(running)
    if point.moment == "state":
        assert running.wait_for_states(point.at), "the run ended before the STATE to kill at"
        switch.fire()
    result = running.wait()
    amplitude.on_received = None
    posthog.on_received = posthog.on_stored = None
    posthog.latency = 0.0
    amplitude.clear_faults()
    return result, switch


def alias_batch_trigger(
    uuids: set[str], nth: int, fire: Callable[[], None]
) -> Callable[[CaptureRequest], None]:
    """Fire on the `nth` stored batch that carries at least one alias."""
    seen = 0

    def on_stored(request: CaptureRequest) -> None:
        nonlocal seen
        if uuids.intersection(request.uuids):
            seen += 1
            if seen == nth:
                fire()

    return on_stored


def resume(pipeline: Pipeline, posthog: PostHogStandIn, killed: PipelineResult) -> ResumePoint:
    """After a kill: the registry is intact; note what it holds before the resumed run."""
    return ResumePoint.after_kill(posthog, Path(pipeline.target_config["alias_registry"]))


def assert_killed_run_resumes(
    pipeline: Pipeline,
    posthog: PostHogStandIn,
    drill_store: ExportStore,
    killed: PipelineResult,
    switch: KillSwitch,
) -> None:
    assert switch.fired.is_set(), f"the kill point was never reached: {killed.describe()}"
    assert not killed.ok, f"a killed run must not look successful: {killed.describe()}"
    point = resume(pipeline, posthog, killed)
    resumed = pipeline.run(killed.last_state)
    assert resumed.ok, resumed.describe()
    assert resumed.bookmark == pipeline.tap_config["end_date"]
    assert_delivered_exactly(posthog, drill_store)
    assert_aliases_once(posthog, drill_store, [point])
    assert_resumed_not_restarted(pipeline, posthog, drill_store)
    FIGURES.kills_survived += 1


def assert_resumed_not_restarted(
    pipeline: Pipeline, posthog: PostHogStandIn, store: ExportStore
) -> None:
    """Only what no stored STATE covered is sent again: the batches in flight or queued, the
    open batch, and the windows being read and downloaded ahead; never everything."""
    config = pipeline.target_config
    batches = config["concurrency"] + 3  # in flight, queued (concurrency + 2), the open one
    windows = Counter(
        (datetime.fromisoformat(r["server_upload_time"]) - DRILL_START.replace(tzinfo=None))
        // timedelta(hours=pipeline.tap_config["window_hours"])
        for r in store.iter_events()
    )
    bound = batches * config["batch_size"] + 2 * max(windows.values())
    resent = sum(n - 1 for n in event_uuid_counts(posthog).values())
    assert resent <= bound, f"{resent} events re-sent (bound {bound}): the run started over"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("point", KILL_POINTS, ids=lambda p: p.id)
def test_sigkill_then_resume_from_last_state_loses_nothing_and_sends_no_alias_twice(
    point: KillPoint,
    pipeline: Pipeline,
    amplitude: AmplitudeStandIn,
    posthog: PostHogStandIn,
    drill_store: ExportStore,
) -> None:
    killed, switch = start_killed_run(point, pipeline, amplitude, posthog, drill_store)
    assert_killed_run_resumes(pipeline, posthog, drill_store, killed, switch)


@pytest.mark.timeout(120)
def test_killed_twice_then_resumed_loses_nothing(
    pipeline: Pipeline,
    amplitude: AmplitudeStandIn,
    posthog: PostHogStandIn,
    drill_store: ExportStore,
) -> None:
    first, switch = start_killed_run(
        KillPoint("target", "batch_stored", _rng.randint(4, 10)), pipeline, amplitude, posthog,
        drill_store,
    )  # fmt: skip
    assert switch.fired.is_set()
    points = [resume(pipeline, posthog, first)]
    second, switch = start_killed_run(
        KillPoint("both", "batch_received", 6), pipeline, amplitude, posthog, drill_store,
        first.last_state,
    )  # fmt: skip
    assert switch.fired.is_set()
    points.append(resume(pipeline, posthog, second))
    state = second.last_state or first.last_state
    resumed = pipeline.run(state)
    assert resumed.ok, resumed.describe()
    assert_delivered_exactly(posthog, drill_store)
    assert_aliases_once(posthog, drill_store, points)
    FIGURES.kills_survived += 2


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("signum", "times", "moment"),
    [
        (signal.SIGTERM, 1, "batch"),
        (signal.SIGINT, 1, "batch"),
        (signal.SIGINT, 2, "batch"),  # an impatient user presses Ctrl-C again
        (signal.SIGTERM, 1, "download"),  # the tap waits on a slow export answer
    ],
    ids=["SIGTERM", "Ctrl-C", "Ctrl-C-twice", "SIGTERM-mid-download"],
)
def test_signal_to_the_pipeline_stops_cleanly_with_a_safe_state_and_resumes(
    signum: int,
    times: int,
    moment: str,
    pipeline: Pipeline,
    amplitude: AmplitudeStandIn,
    posthog: PostHogStandIn,
    drill_store: ExportStore,
) -> None:
    """Ctrl-C reaches both processes (one process group); a service stop sends SIGTERM."""
    posthog.latency = 0.05  # batches in flight when the signal lands
    switch = KillSwitch("both", signum)
    slow_download_started = threading.Event()
    if moment == "download":
        amplitude.inject(Fault.delay(0), times=4)
        amplitude.inject(Fault.delay(5))
        amplitude.on_received = lambda n: slow_download_started.set() if n == 5 else None
    else:
        posthog.on_stored = lambda r: switch.fire() if r.seq == 8 else None
    running = pipeline.start()
    switch.arm(running)
    if moment == "download":
        # Once the tap waits on the slow answer and the target has vouched for some windows
        # (before that, the only safe STATE is none at all).
        assert slow_download_started.wait(RUN_TIMEOUT_SECONDS)
        assert running.wait_for_states(2)
        switch.fire()
    if times == 2:
        assert switch.fired.wait(RUN_TIMEOUT_SECONDS)
        running.kill("both", signum)
    stopped = running.wait()
    posthog.on_stored = None
    amplitude.on_received = None
    posthog.latency = 0.0
    assert switch.fired.is_set()
    assert stopped.tap_returncode == 128 + signum, stopped.describe()
    assert stopped.target_returncode == 128 + signum, stopped.describe()
    assert f"stopping on signal {signum}" in stopped.target_stderr
    assert "Traceback" not in stopped.target_stderr + stopped.tap_stderr, stopped.describe()
    # The safe STATE: everything it vouches for is stored in PostHog.
    assert stopped.last_state is not None, stopped.describe()
    covered_until = stopped.bookmark
    assert covered_until is not None
    stored = {e["uuid"] for e in posthog.events}
    vouched = {
        r["uuid"]
        for r in drill_store.iter_events()
        if r["server_upload_time"].replace(" ", "T") + "+00:00" < covered_until
    }
    assert vouched <= stored, "the STATE emitted on a signal vouches for undelivered events"

    point = resume(pipeline, posthog, stopped)
    resumed = pipeline.run(stopped.last_state)
    assert resumed.ok, resumed.describe()
    assert_delivered_exactly(posthog, drill_store)
    assert_aliases_once(posthog, drill_store, [point])
    FIGURES.terminations_survived += 1


def test_a_pipeline_paused_past_every_timeout_goes_on_and_loses_nothing(
    pipeline: Pipeline,
    amplitude: AmplitudeStandIn,
    posthog: PostHogStandIn,
    drill_store: ExportStore,
) -> None:
    """A laptop that sleeps mid-migration: both plugins stop (SIGSTOP) for longer than either
    request_timeout, with batches and downloads in flight, then go on (SIGCONT)."""
    pipeline.tap_config["request_timeout"] = 1
    pipeline.target_config["request_timeout"] = 1
    posthog.latency = 0.05  # batches in flight when the pause lands
    switch = KillSwitch("both", signal.SIGSTOP)
    posthog.on_stored = lambda r: switch.fire() if r.seq == 8 else None
    running = pipeline.start()
    switch.arm(running)
    assert switch.fired.wait(RUN_TIMEOUT_SECONDS)
    time.sleep(2.5)
    running.kill("both", signal.SIGCONT)
    result = running.wait()
    posthog.on_stored = None
    posthog.latency = 0.0
    assert result.ok, result.describe()
    assert "Traceback" not in result.target_stderr + result.tap_stderr, result.describe()
    assert_delivered_exactly(posthog, drill_store)
    assert_aliases_once(posthog, drill_store)
    FIGURES.pauses_survived += 1


# The target's signal handler must never wait for a lock the code it interrupted may hold:
# it runs on the main thread, so that wait is forever (a hang with batches in flight).
# Two such moments, placed exactly (the Ctrl-C-twice drill above hits the first one a few
# times in a hundred): a second Ctrl-C while the handler of the first is inside
# threading.Event.set(), and a SIGTERM while the target itself is inside that call as it
# closes at the end of a run.
_SIGNAL_INSIDE_EVENT_SET = """
import os, signal, sys
from pathlib import Path
from target_posthog.target import TargetPostHog

folder, moment = Path(sys.argv[1]), sys.argv[2]
target = TargetPostHog(config={
    "api_key": "phc_x", "host": "http://127.0.0.1:9",
    "alias_registry": str(folder / "aliases.sqlite"),
    "dead_letter_path": str(folder / "dead-letter.jsonl"),
}, validate_config=True)
stopping_lock = target._stopping._cond  # held by Event.set() while it notifies waiters
notify_all = stopping_lock.notify_all

def notify_all_interrupted():
    stopping_lock.notify_all = notify_all
    signal.raise_signal(signal.SIGINT if moment == "second-signal" else signal.SIGTERM)
    notify_all()

stopping_lock.notify_all = notify_all_interrupted
if moment == "second-signal":
    signal.raise_signal(signal.SIGINT)  # the first Ctrl-C; the second comes inside it
else:
    target.close()  # the end of a run; the SIGTERM comes inside it
print("signal handled", flush=True)
os._exit(0)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("moment", ["second-signal", "signal-during-close"])
def test_a_signal_inside_the_targets_own_event_set_does_not_hang_it(
    moment: str, tmp_path: Path
) -> None:
    try:
        done = subprocess.run(
            [sys.executable, "-c", _SIGNAL_INSIDE_EVENT_SET, str(tmp_path), moment],
            capture_output=True, text=True, timeout=20, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"target-posthog deadlocked in its signal handler ({moment})")
    assert "signal handled" in done.stdout, done.stderr[-2000:]
