"""Crash drills on wide export windows (issue 16): with the tap's default, adaptive windows (a
day at a time here), a SIGKILL anywhere re-sends at most the hour being read plus the batches
in flight, loses nothing, and a rerun from the final STATE sends nothing.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.pipeline_harness import (
    DRILL_START,
    FIGURES,
    Pipeline,
    PipelineResult,
    ResumePoint,
    assert_aliases_once,
    assert_delivered_exactly,
    build_drill_store,
    drill_tap_config,
    drill_target_config,
    event_uuid_counts,
    posthog,
    serve_export,
)
from tests.test_reliability_kills import KillPoint, start_killed_run
from tests.testbed.amplitude import AmplitudeStandIn
from tests.testbed.posthog import PostHogStandIn
from tests.testbed.store import ExportStore

__all__ = ["posthog"]  # fixture used by name

HOURS = 48
EVENTS = 2_400  # about 50 an hour: each one-day window holds about 1,200
_rng = random.Random(16)

KILL_POINTS = [
    *(KillPoint("tap", "records", _rng.randint(100, 2_300)) for _ in range(3)),
    *(KillPoint("target", "batch_stored", _rng.randint(5, 55)) for _ in range(2)),
    *(KillPoint("both", "batch_received", _rng.randint(5, 55)) for _ in range(2)),
    KillPoint("target", "state", _rng.randint(5, 30)),
]


@pytest.fixture(scope="module")
def wide_store(tmp_path_factory: pytest.TempPathFactory) -> ExportStore:
    return build_drill_store(tmp_path_factory.mktemp("wide-export"), hours=HOURS, events=EVENTS)


@pytest.fixture
def wide_amplitude(wide_store: ExportStore) -> Iterator[AmplitudeStandIn]:
    yield from serve_export(wide_store)


@pytest.fixture
def wide_pipeline(
    tmp_path: Path, wide_amplitude: AmplitudeStandIn, posthog: PostHogStandIn
) -> Pipeline:
    """Default tap windows (no window_hours): the first asks for a whole day."""
    workdir = tmp_path / "run"
    tap = drill_tap_config(wide_amplitude, HOURS, window_hours=None)
    return Pipeline(workdir, tap, drill_target_config(workdir, posthog))


def resend_bound(pipeline: Pipeline, store: ExportStore) -> int:
    """The hour being read (the fullest hour), plus every batch that can be in flight (sent or
    queued: concurrency + 2, and the one being filled): the issue's bound. Nothing confirmed
    waits behind a held-back STATE (target_posthog/delivery.py writes each safe STATE at once)."""
    by_hour = Counter(
        datetime.fromisoformat(r["server_upload_time"]).replace(minute=0, second=0, microsecond=0)
        for r in store.iter_events()
    )
    config = pipeline.target_config
    batches = config["concurrency"] + 3
    return max(by_hour.values()) + batches * config["batch_size"]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("point", KILL_POINTS, ids=lambda p: p.id)
def test_a_kill_in_a_wide_window_resends_at_most_an_hour_and_the_batches_in_flight(
    point: KillPoint,
    wide_pipeline: Pipeline,
    wide_amplitude: AmplitudeStandIn,
    posthog: PostHogStandIn,
    wide_store: ExportStore,
) -> None:
    killed, switch = start_killed_run(point, wide_pipeline, wide_amplitude, posthog, wide_store)
    assert switch.fired.is_set(), f"the kill point was never reached: {killed.describe()}"
    assert not killed.ok, killed.describe()
    widths = {r.end - r.start for r in wide_amplitude.requests if r.end and r.start}
    assert max(widths) >= timedelta(hours=23), "the tap did not ask for wide windows"
    registry = Path(wide_pipeline.target_config["alias_registry"])
    resumed_from = ResumePoint.after_kill(posthog, registry)
    resumed = wide_pipeline.run(killed.last_state)
    assert resumed.ok, resumed.describe()
    end = (DRILL_START + timedelta(hours=HOURS)).isoformat()
    assert resumed.bookmark == end
    assert_delivered_exactly(posthog, wide_store)
    assert_aliases_once(posthog, wide_store, [resumed_from])
    resent = sum(n - 1 for n in event_uuid_counts(posthog).values())
    bound = resend_bound(wide_pipeline, wide_store)
    assert resent <= bound, f"{resent} events re-sent after one kill (bound {bound})"
    FIGURES.kills_survived += 1
    assert_rerun_sends_nothing(wide_pipeline, wide_amplitude, posthog, resumed)


def assert_rerun_sends_nothing(
    pipeline: Pipeline, amplitude: AmplitudeStandIn, posthog: PostHogStandIn, last: PipelineResult
) -> None:
    asked, sent = len(amplitude.requests), len(posthog.requests)
    again = pipeline.run(last.last_state)
    assert again.ok, again.describe()
    assert again.records_relayed == 0
    assert (len(amplitude.requests), len(posthog.requests)) == (asked, sent)
    assert again.bookmark == last.bookmark
