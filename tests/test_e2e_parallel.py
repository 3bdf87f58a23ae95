"""Parallel range jobs: several `meltano run`s at once over disjoint date ranges of one Amplitude
project, each with its own state id (`--state-id-suffix`) and start/end dates, sharing one
PostgreSQL registry, Meltano's system database in the same server, and PostHog's agreed speed.

One job is killed (its whole process group, as an OOM kill would) and rerun while the others go
on: every event arrives (re-sends only as the same event), each device is aliased to one user,
the registry and PostHog agree on every owner, and together the jobs never beat the speed.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.meltano_harness import (
    AMPLITUDE_KEY,
    AMPLITUDE_SECRET,
    POSTHOG_KEY,
    REPO_ROOT,
    MeltanoProject,
    install_plugins,
    tap_settings,
    target_settings,
)
from tests.postgres import PostgresServer
from tests.target_support import is_export_event
from tests.testbed.amplitude import AmplitudeStandIn
from tests.testbed.generator import ExportSpec, ExportStore
from tests.testbed.posthog import PostHogStandIn

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

START = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
HOURS, JOBS = 48, 3
EVENTS_PER_MINUTE = 9_000  # the speed "agreed with PostHog", for all jobs together
JOB = ("tap-amplitude", "target-posthog")


@pytest.fixture(scope="module", autouse=True)
def _plugins_installed() -> None:
    install_plugins()


@pytest.fixture
def store(tmp_path: Path) -> ExportStore:
    return ExportStore.build(tmp_path / "export", ExportSpec(start=START, hours=HOURS, events=2400))


@pytest.fixture
def amplitude(store: ExportStore) -> Iterator[AmplitudeStandIn]:
    with AmplitudeStandIn(store, api_key=AMPLITUDE_KEY, secret_key=AMPLITUDE_SECRET) as server:
        yield server


@pytest.fixture
def posthog() -> Iterator[PostHogStandIn]:
    with PostHogStandIn(api_key=POSTHOG_KEY) as server:
        yield server


def own_sys_dir(out: Path) -> Path:
    """A job's own .meltano, sharing the plugin virtualenvs `meltano install` made (what a
    `MELTANO_SYS_DIR_ROOT=... meltano install` per job would build again)."""
    sys_dir = out / ".meltano"
    sys_dir.mkdir()
    for kind in ("extractors", "loaders"):
        (sys_dir / kind).symlink_to(REPO_ROOT / ".meltano" / kind, target_is_directory=True)
    return sys_dir


class RangeJob:
    """One `meltano run --state-id-suffix range-N` over its own hours of the export."""

    def __init__(self, index: int, project: MeltanoProject, out: Path) -> None:
        self.suffix = f"range-{index}"
        self.project = project
        self.out = out
        self.outputs: list[str] = []
        self._process: subprocess.Popen[str] | None = None

    @property
    def state_id(self) -> str:
        return f"{self.project.state_id}:{self.suffix}"

    def start(self, *, force: bool = False) -> None:
        args = ["run", *(["--force"] if force else []), "--state-id-suffix", self.suffix, *JOB]
        self._log = (self.out / f"{self.suffix}-{len(self.outputs)}.log").open("w+")
        self._process = subprocess.Popen(
            self.project.command(*args),
            cwd=REPO_ROOT,
            env=self.project.env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        assert self._process is not None
        os.killpg(self._process.pid, signal.SIGKILL)
        self.wait()

    def wait(self, timeout: float = 400) -> int:
        assert self._process is not None
        try:
            code = self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            raise
        finally:
            self._log.seek(0)
            self.outputs.append(self._log.read())
            self._log.close()
        return code

    def bookmark(self) -> str:
        import orjson

        result = self.project.run("state", "get", self.state_id, timeout=60)
        assert result.returncode == 0, result.stderr
        state = orjson.loads(result.stdout.strip().splitlines()[-1])
        return state["singer_state"]["bookmarks"]["events"]["replication_key_value"]


def test_parallel_range_jobs_share_one_registry_and_the_speed_and_survive_a_kill(
    tmp_path: Path,
    store: ExportStore,
    amplitude: AmplitudeStandIn,
    posthog: PostHogStandIn,
    postgres_server: PostgresServer,
) -> None:
    registry = postgres_server.create_database()
    meltano_db = postgres_server.create_database()
    span = HOURS // JOBS
    jobs = []
    for index in range(JOBS):
        begin = START + dt.timedelta(hours=index * span)
        out = tmp_path / f"job-{index}"
        out.mkdir()
        settings = tap_settings(amplitude.url, begin, begin + dt.timedelta(hours=span))
        settings |= target_settings(posthog.url, out)
        settings |= {
            "TAP_AMPLITUDE_WINDOW_HOURS": "2",
            "TARGET_POSTHOG_ALIAS_REGISTRY": registry,
            "TARGET_POSTHOG_MAX_EVENTS_PER_MINUTE": str(EVENTS_PER_MINUTE),
            "TARGET_POSTHOG_BATCH_SIZE": "40",
            # Meltano's own state and job records in the same server: nothing on local disk.
            "MELTANO_DATABASE_URI": meltano_db.replace("postgresql://", "postgresql+psycopg://"),
            # Meltano writes each run's plugin config and catalog under .meltano/run/: jobs on
            # one machine need their own (in containers each job has its own anyway).
            "MELTANO_SYS_DIR_ROOT": str(own_sys_dir(out)),
        }
        project = MeltanoProject(workdir=out, environment="prod", settings=settings)
        jobs.append(RangeJob(index, project, out))

    # Meltano migrates its system database on first use; jobs started at once would all try,
    # so one command prepares it first (as an orchestrator's set-up step would).
    prepared = jobs[0].project.run("state", "list", timeout=120)
    assert prepared.returncode == 0, prepared.stderr
    for job in jobs:
        job.start()
    total = len(store.uuids())
    deadline = time.monotonic() + 300
    while posthog.event_count < total * 0.4 and time.monotonic() < deadline:
        assert all(job.running() for job in jobs), "a job ended before the kill"
        time.sleep(0.05)
    killed = jobs[1]
    killed.kill()  # mid-range: the others go on
    killed.start(force=True)  # rerun at once, as an orchestrator's retry would
    codes = [job.wait() for job in jobs]
    assert codes == [0, 0, 0], "\n".join(job.outputs[-1][-3000:] for job in jobs)

    # Each job's own state id ends at its own end date.
    for index, job in enumerate(jobs):
        end = START + dt.timedelta(hours=(index + 1) * span)
        assert job.bookmark() == end.isoformat()

    # Nothing lost; a re-send (after the kill) is the same event, so PostHog keeps one.
    sent = [e for e in posthog.events if is_export_event(e)]
    assert {e["uuid"] for e in sent} == store.uuids()
    unique = [e for e in posthog.unique_events() if is_export_event(e)]
    assert len(unique) == total

    # One alias per device, to one user; a repeat only as the same event (kill before the
    # registry recorded PostHog's answer), never a second user.
    copies: dict[str, list[dict]] = defaultdict(list)
    for alias in posthog.aliases():
        copies[alias["properties"]["alias"]].append(alias)
    for device, sent_aliases in copies.items():
        assert len({(a["uuid"], a["distinct_id"]) for a in sent_aliases}) == 1, device
    aliased = {device: sent_aliases[0]["distinct_id"] for device, sent_aliases in copies.items()}

    # The registry agrees: every claim confirmed, the owner PostHog got, every other user of
    # a device recorded as shared (the same owner in every job's view).
    with psycopg.connect(registry) as connection:
        owners = dict(connection.execute("SELECT device_id, user_id FROM aliases").fetchall())
        unconfirmed = connection.execute(
            "SELECT count(*) FROM aliases WHERE confirmed_at IS NULL"
        ).fetchone()
        shared = set(connection.execute("SELECT device_id, user_id FROM shared_devices"))
    assert unconfirmed == (0,)
    assert owners == aliased
    seen: set[tuple[str, str]] = {
        (r["device_id"], r["user_id"])
        for r in store.iter_events()
        if r.get("device_id") and r.get("user_id") and r["device_id"] != r["user_id"]
    }
    assert set(owners.items()) | shared == seen
    assert not set(owners.items()) & shared

    # Together the jobs kept to the agreed speed: no stretch of the run got more events than
    # the speed allows (plus one batch per job in flight, and a second of timing slack).
    per_second = EVENTS_PER_MINUTE / 60
    requests = sorted(posthog.requests, key=lambda r: r.received_at)
    first = requests[0].received_at
    received = 0
    for request in requests:
        allowed = per_second * (request.received_at - first + 1.0) + 40 * JOBS * 4
        assert received <= allowed, f"{received} events by {request.received_at - first:.1f}s"
        received += request.event_count
    elapsed = requests[-1].received_at - first
    assert received / elapsed <= per_second * 1.25  # three unshared budgets would be ~3x

    # The URL's password never reached Meltano's or the plugins' output.
    for job in jobs:
        for output in job.outputs:
            assert postgres_server.password not in output
