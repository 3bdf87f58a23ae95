"""Two pipelines at once on one registry, on SQLite and on PostgreSQL: the same export read by
both (the harshest overlap: every pair is met by both runs), with and without a kill.

Every event reaches PostHog (each sent by both runs, as the same event); each device is aliased
by one run only, to one user; a killed run's claims are taken over by its resume.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from target_posthog.registry_store import open_database

from tests import pipeline_harness
from tests.pipeline_harness import (
    DRILL_HOURS,
    FIGURES,
    KillSwitch,
    Pipeline,
    alias_copies,
    assert_aliases_once,
    assert_delivered_exactly,
    drill_tap_config,
    drill_target_config,
)
from tests.testbed.amplitude import AmplitudeStandIn
from tests.testbed.posthog import PostHogStandIn
from tests.testbed.store import ExportStore

pytestmark = pytest.mark.timeout(240)

# The drills' shared fixtures: the export, its Export API stand-in, PostHog's stand-in.
drill_store = pipeline_harness.drill_store
amplitude = pipeline_harness.amplitude
posthog = pipeline_harness.posthog


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "shared-aliases.sqlite")
    return request.getfixturevalue("postgres_server").create_database()


def two_pipelines(
    tmp_path: Path, amplitude: AmplitudeStandIn, posthog: PostHogStandIn, registry: str
) -> list[Pipeline]:
    pipelines = []
    for name in ("job-a", "job-b"):
        workdir = tmp_path / name
        target = drill_target_config(workdir, posthog, alias_registry=registry)
        pipelines.append(Pipeline(workdir, drill_tap_config(amplitude, DRILL_HOURS), target))
    return pipelines


def unconfirmed_claims(registry: str) -> int:
    database = open_database(registry, read_only=True)
    try:
        return int(database.read("SELECT count(*) FROM aliases WHERE confirmed_at IS NULL")[0][0])
    finally:
        database.close()


def test_two_runs_at_once_send_each_alias_once(
    tmp_path: Path,
    amplitude: AmplitudeStandIn,
    posthog: PostHogStandIn,
    drill_store: ExportStore,
    registry: str,
) -> None:
    running = [p.start() for p in two_pipelines(tmp_path, amplitude, posthog, registry)]
    results = [run.wait() for run in running]
    assert all(result.ok for result in results), results[0].describe() + results[1].describe()
    assert_delivered_exactly(posthog, drill_store)
    assert assert_aliases_once(posthog, drill_store) == 0, "a pair was aliased by both runs"
    assert all(len(copies) == 1 for copies in alias_copies(posthog).values())
    assert unconfirmed_claims(registry) == 0


def test_a_run_killed_beside_another_resumes_and_no_alias_is_lost_or_doubled(
    tmp_path: Path,
    amplitude: AmplitudeStandIn,
    posthog: PostHogStandIn,
    drill_store: ExportStore,
    registry: str,
) -> None:
    first, second = two_pipelines(tmp_path, amplitude, posthog, registry)
    switch = KillSwitch("target")
    third = len(drill_store.uuids()) // 3
    fired = threading.Event()

    def kill_at_a_third(request: object) -> None:
        if posthog.event_count >= third and not fired.is_set():
            fired.set()
            switch.fire()

    posthog.on_stored = kill_at_a_third
    killed_run = first.start()
    switch.arm(killed_run)
    other = second.start()
    killed = killed_run.wait()
    assert switch.fired.is_set() and not killed.ok
    posthog.on_stored = None
    resumed = first.run(killed.last_state)  # while the other run goes on
    finished = other.wait()
    assert resumed.ok, resumed.describe()
    assert finished.ok, finished.describe()
    assert resumed.bookmark == first.tap_config["end_date"]
    assert_delivered_exactly(posthog, drill_store)
    assert_aliases_once(posthog, drill_store)  # a repeat only as the same event
    assert unconfirmed_claims(registry) == 0  # the killed run's claims were taken over
    FIGURES.kills_survived += 1
