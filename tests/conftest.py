"""Shared fixtures. tap-amplitude: small exports, the Export API stand-in, the real CLI; a
migrated drill export for the verification's tests."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from tests.postgres import PostgresServer
from tests.testbed.amplitude import AmplitudeStandIn
from tests.testbed.events import ExportSpec
from tests.testbed.store import ExportStore

if TYPE_CHECKING:
    from tests.verify_harness import Migration

TAP_AMPLITUDE = Path(sys.executable).with_name("tap-amplitude")
TAP_DAY = datetime(2024, 3, 1, tzinfo=UTC)  # first hour of the tap tests' exports
# Distinctive fake keys, so a leak anywhere in the output is found by a plain substring search.
TAP_API_KEY = "tapkey-4f1c9e-never-print"
TAP_SECRET = "tapsecret-9a7e2b-never-print"


@dataclass
class TapRun:
    """What one run of the real `tap-amplitude` CLI wrote."""

    returncode: int
    stdout: str
    stderr: str
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def records(self) -> list[dict[str, Any]]:
        return [m["record"] for m in self.messages if m["type"] == "RECORD"]

    @property
    def states(self) -> list[dict[str, Any]]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    @property
    def bookmark(self) -> str | None:
        """The events bookmark of the last STATE (what Meltano would store)."""
        return bookmark_of(self.states[-1]) if self.states else None

    def uuids(self) -> list[str]:
        return [r["uuid"] for r in self.records]


def bookmark_of(state: dict[str, Any]) -> str | None:
    return state.get("bookmarks", {}).get("events", {}).get("replication_key_value")


def parse_messages(stdout: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stdout.splitlines() if line.strip()]


def file_size_limit(limit: int) -> Callable[[], None]:
    """A child-process hook (`preexec_fn`) that makes any file write past `limit` bytes fail
    (EFBIG), as a full disk would; SIGXFSZ is ignored so the write fails instead of killing
    the process. POSIX only."""

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_file_size


def tap_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TAP_AMPLITUDE_")}


def write_tap_files(
    workdir: Path, config: dict[str, Any], state: dict[str, Any] | None
) -> list[str]:
    """Config (and state) files for one run; returns the CLI arguments naming them."""
    workdir.mkdir(parents=True, exist_ok=True)
    count = len(list(workdir.glob("config-*.json")))
    config_file = workdir / f"config-{count}.json"
    config_file.write_bytes(orjson.dumps(config))
    args = ["--config", str(config_file)]
    if state is not None:
        state_file = workdir / f"state-{count}.json"
        state_file.write_bytes(orjson.dumps(state))
        args += ["--state", str(state_file)]
    return args


def start_tap(args: list[str], *, stderr: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    """The real tap CLI with its output on a pipe the test reads (and may stop reading);
    `stderr=subprocess.PIPE` to read its log too."""
    return subprocess.Popen(
        [str(TAP_AMPLITUDE), *args], stdout=subprocess.PIPE, stderr=stderr, env=tap_environment()
    )


@pytest.fixture
def run_tap(tmp_path: Path) -> Callable[..., TapRun]:
    """Run `tap-amplitude --config ... [--state ...]` to completion and parse its output."""

    def run(config: dict[str, Any], state: dict[str, Any] | None = None) -> TapRun:
        args = write_tap_files(tmp_path / "tap", config, state)
        done = subprocess.run(
            [str(TAP_AMPLITUDE), *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=tap_environment(),
            check=False,
        )
        return TapRun(done.returncode, done.stdout, done.stderr, parse_messages(done.stdout))

    return run


def tap_config(amplitude: AmplitudeStandIn, **overrides: Any) -> dict[str, Any]:
    """A config pointing at the stand-in, with tiny retry waits so fault tests stay fast."""
    config: dict[str, Any] = {
        "api_key": amplitude.api_key,
        "secret_key": amplitude.secret_key,
        "api_url": amplitude.url,
        "start_date": TAP_DAY.isoformat(),
        "end_date": (TAP_DAY + timedelta(days=30)).isoformat(),
        "max_retries": 3,
        "retry_base_seconds": 0.01,
        "request_timeout": 10,
    }
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


def small_store(directory: Path, *, hours: int = 72, events: int = 3_000, **kw: Any) -> ExportStore:
    return ExportStore.build(directory, ExportSpec(start=TAP_DAY, hours=hours, events=events, **kw))


@pytest.fixture(scope="session")
def three_day_store(tmp_path_factory: pytest.TempPathFactory) -> ExportStore:
    """72 hours, 3,000 events; shared, so never modified by a test."""
    return small_store(tmp_path_factory.mktemp("three-days"))


@pytest.fixture
def fresh_store(tmp_path: Path) -> ExportStore:
    """The same shape as `three_day_store`, but a test's own (it may add to or corrupt it)."""
    return small_store(tmp_path / "export")


@pytest.fixture
def amplitude_api(three_day_store: ExportStore) -> Iterator[AmplitudeStandIn]:
    with AmplitudeStandIn(three_day_store, api_key=TAP_API_KEY, secret_key=TAP_SECRET) as server:
        yield server


# --- PostgreSQL: one real server for the session (tests/postgres.py) ----------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server on 127.0.0.1 (password auth), stopped and removed at the end."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL (with its password) of a new empty database of the session's server."""
    return postgres_server.create_database()


# --- the verification: one migrated drill export to verify ----------------------------------


@pytest.fixture(scope="module")
def _migrated_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Migration]:
    """One complete drill migration per test module (tests/test_verify*.py)."""
    from tests.pipeline_harness import build_drill_store
    from tests.verify_harness import Migration

    workdir = tmp_path_factory.mktemp("migrated")
    migration = Migration(workdir, build_drill_store(workdir / "export"))
    try:
        migration.run()
        yield migration
    finally:
        migration.stop()


@pytest.fixture
def migrated(_migrated_once: Migration) -> Iterator[Migration]:
    """One complete migration shared by the tests that only verify it (one drill run instead of
    eight); what a test changes in the stand-ins' answers is put back after it."""
    yield _migrated_once
    _migrated_once.amplitude.dashboard.time_zone = "UTC"
    _migrated_once.amplitude.dashboard.queries_per_hour = None
    _migrated_once.posthog.query_api.queries_per_hour = 120
    _migrated_once.posthog.query_api.faults.clear()


# --- reliability drills: the session's figures in pytest's terminal summary ----------------


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the drill figures (kills survived, faults injected, ...) when drills ran."""
    from tests.pipeline_harness import FIGURES  # only the drills fill it

    if FIGURES.pipeline_runs:
        terminalreporter.section("reliability drill figures")
        for line in FIGURES.lines():
            terminalreporter.write_line(line)
