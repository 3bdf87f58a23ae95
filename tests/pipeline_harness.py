"""Run `tap-amplitude | target-posthog` as real subprocesses, the way `meltano run` does.

The harness stands where Meltano stands: it relays the tap's stdout to the target's stdin line
by line, keeps every STATE line the target prints (the last one is what Meltano would have
stored), and can SIGKILL or SIGTERM either process, or both, at a chosen moment. A drill then
resumes the same command from that STATE and checks, by uuid, what reached the PostHog stand-in.

It also keeps the session's drill figures (kills survived, faults injected, ...) that
tests/conftest.py prints in pytest's terminal summary.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest

from tests.conftest import TAP_AMPLITUDE, tap_environment
from tests.target_support import ALIAS_EVENTS, TARGET, is_export_event, target_config
from tests.testbed.amplitude import AmplitudeStandIn
from tests.testbed.events import ExportSpec
from tests.testbed.faults import Fault
from tests.testbed.posthog import PostHogStandIn
from tests.testbed.store import ExportStore

# Distinctive fake secrets: any leak into any output is found by a plain substring search.
AMPLITUDE_KEY = "ampkey-drill-5e8c1d-never-print"
AMPLITUDE_SECRET = "ampsecret-drill-b27f04-never-print"
POSTHOG_KEY = "phc_drill_secret_3a9d6e_never_print"
SECRETS = (AMPLITUDE_KEY, AMPLITUDE_SECRET, POSTHOG_KEY)

DRILL_START = datetime(2024, 5, 1, tzinfo=UTC)  # first hour of the drills' exports
RUN_TIMEOUT_SECONDS = 60.0  # one pipeline run of a drill export takes a few seconds

Which = Literal["tap", "target", "both"]


@dataclass
class DrillFigures:
    """Per-session counters, printed in pytest's terminal summary."""

    kills_survived: int = 0
    terminations_survived: int = 0
    pauses_survived: int = 0  # SIGSTOP ... SIGCONT of the running pipeline
    faults_injected: int = 0
    dead_lettered: int = 0
    events_resent: int = 0  # events PostHog received more than once (same uuid)
    aliases_resent: int = 0  # aliases PostHog received more than once (same uuid)
    duplicates_collapsed: int = 0  # of those re-sends, how many unique_events() collapsed
    pipeline_runs: int = 0

    def lines(self) -> list[str]:
        return [
            f"pipeline runs: {self.pipeline_runs}",
            f"SIGKILLs survived (resumed, nothing lost): {self.kills_survived}",
            f"SIGTERM/SIGINT stops survived: {self.terminations_survived}",
            f"SIGSTOP/SIGCONT pauses survived: {self.pauses_survived}",
            f"faults injected (served by the stand-ins: injected faults, size refusals, outage "
            f"answers): {self.faults_injected}",
            f"records dead-lettered: {self.dead_lettered}",
            f"duplicates re-sent: {self.events_resent} events, {self.aliases_resent} aliases; "
            f"collapsed by uuid: {self.duplicates_collapsed}",
        ]


FIGURES = DrillFigures()


# A stand-in answer that is a fault the pipeline had to survive (besides injected faults):
# Amplitude refusing an export as too large, PostHog refusing a body as too large or down.
_FAULT_STATUSES = frozenset((400, 413, 503, 504))
_PACING = Fault.delay(0)  # injected only to let the first requests through untouched


def count_faults_fired(server: AmplitudeStandIn | PostHogStandIn) -> None:
    """Add the faults a stand-in really served to the session's figures."""
    FIGURES.faults_injected += sum(
        1
        for r in server.requests
        if (r.fault is not None and r.fault != _PACING) or r.status in _FAULT_STATUSES
    )


# --- configs ---------------------------------------------------------------------------------


def drill_tap_config(amplitude: AmplitudeStandIn, hours: int, **overrides: Any) -> dict[str, Any]:
    """Small windows and tiny retry waits, so a drill export spans many STATEs and runs fast."""
    config: dict[str, Any] = {
        "api_key": AMPLITUDE_KEY,
        "secret_key": AMPLITUDE_SECRET,
        "api_url": amplitude.url,
        "start_date": DRILL_START.isoformat(),
        "end_date": (DRILL_START + timedelta(hours=hours)).isoformat(),
        "window_hours": 2,
        "max_retries": 3,
        "retry_base_seconds": 0.01,
        "request_timeout": 10,
    }
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


def drill_target_config(
    workdir: Path, posthog: PostHogStandIn | None, **overrides: Any
) -> dict[str, Any]:
    """The target tests' config with the drills' secret and batching; None drops a setting."""
    config = target_config(workdir, posthog, api_key=POSTHOG_KEY, batch_size=40, concurrency=2)
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


def drill_pipeline(workdir: Path, amplitude: AmplitudeStandIn, posthog: PostHogStandIn) -> Pipeline:
    """`amplitude`'s export (the drill range) into `posthog`, the target's files in `workdir`."""
    return Pipeline(
        workdir, drill_tap_config(amplitude, DRILL_HOURS), drill_target_config(workdir, posthog)
    )


# --- one run of the pipeline ----------------------------------------------------------------


@dataclass
class PipelineResult:
    """What one run left behind: exit codes, logs, and the STATE lines of the target."""

    tap_returncode: int
    target_returncode: int
    tap_stderr: str
    target_stderr: str
    states: list[dict[str, Any]]
    records_relayed: int
    killed: str = ""  # which process the drill killed (or signalled), for messages

    @property
    def last_state(self) -> dict[str, Any] | None:
        """What Meltano would have stored: the last STATE the target emitted."""
        return self.states[-1] if self.states else None

    @property
    def bookmark(self) -> str | None:
        state = self.last_state or {}
        return state.get("bookmarks", {}).get("events", {}).get("replication_key_value")

    @property
    def ok(self) -> bool:
        return self.tap_returncode == 0 and self.target_returncode == 0

    def describe(self) -> str:
        return (
            f"tap exit {self.tap_returncode}, target exit {self.target_returncode}, "
            f"{self.records_relayed} records relayed, {len(self.states)} STATEs, "
            f"killed: {self.killed or 'none'}\n--- tap stderr (tail) ---\n"
            f"{self.tap_stderr[-3000:]}\n--- target stderr (tail) ---\n{self.target_stderr[-3000:]}"
        )


class RunningPipeline:
    """`tap | target`, relayed by this process; see the module docstring."""

    def __init__(
        self,
        workdir: Path,
        tap_args: list[str],
        target_args: list[str],
        run_id: int,
        *,
        kill_tap_after_records: int | None = None,
    ) -> None:
        self._workdir = workdir
        self._tap_stderr_path = workdir / f"tap-{run_id}.stderr"
        self._target_stderr_path = workdir / f"target-{run_id}.stderr"
        self.states: list[dict[str, Any]] = []
        self.records_relayed = 0
        self.killed: list[str] = []
        self._kill_tap_after = kill_tap_after_records
        self._tap_signalled = False
        self._state_seen = threading.Condition()
        self._target_output_ended = False
        env = {**tap_environment(), "PYTHONUNBUFFERED": "1"}
        env = {k: v for k, v in env.items() if not k.startswith("TARGET_POSTHOG_")}
        with (
            self._tap_stderr_path.open("wb") as tap_err,
            self._target_stderr_path.open("wb") as err,
        ):
            self.target = subprocess.Popen(
                [str(TARGET), *target_args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=err, cwd=workdir, env=env,
            )  # fmt: skip
            self.tap = subprocess.Popen(
                [str(TAP_AMPLITUDE), *tap_args], stdout=subprocess.PIPE, stderr=tap_err,
                cwd=workdir, env=env,
            )  # fmt: skip
        self._relay = threading.Thread(target=self._relay_lines, daemon=True, name="relay")
        self._states = threading.Thread(target=self._read_states, daemon=True, name="states")
        self._relay.start()
        self._states.start()

    # Meltano reads the tap's output and writes it to the target; so does this thread.
    def _relay_lines(self) -> None:
        assert self.tap.stdout is not None and self.target.stdin is not None
        sink = self.target.stdin
        try:
            for line in self.tap.stdout:
                if line.startswith(b'{"type":"RECORD"') or b'"type": "RECORD"' in line[:40]:
                    self.records_relayed += 1
                    if self.records_relayed == self._kill_tap_after:
                        self.kill("tap")  # mid-archive: the tap is still reading its window
                sink.write(line)
        except (BrokenPipeError, ValueError):
            self._after_target_gone()
        finally:
            with contextlib.suppress(BrokenPipeError):
                sink.close()  # end of input for the target

    def _after_target_gone(self) -> None:
        """The target stopped reading. A tap the drill signalled is left to stop on its own
        (its clean exit is under test; its output is drained so it never blocks); any other
        tap is ended, as Meltano ends the extractor when the loader fails."""
        assert self.tap.stdout is not None
        if self._tap_signalled:
            for _ in self.tap.stdout:
                pass
        elif self.tap.poll() is None:
            self.tap.kill()

    def _read_states(self) -> None:
        assert self.target.stdout is not None
        # A Singer target prints each state as a bare JSON value on its own line (no
        # envelope); Meltano stores every one, and the last is where a resumed run starts.
        for line in self.target.stdout:
            if line.strip():
                with self._state_seen:
                    self.states.append(orjson.loads(line))
                    self._state_seen.notify_all()
        with self._state_seen:
            self._target_output_ended = True
            self._state_seen.notify_all()

    def wait_for_states(self, count: int, timeout: float = RUN_TIMEOUT_SECONDS) -> bool:
        """True once the target has printed `count` STATE lines; False if it never will."""
        with self._state_seen:
            self._state_seen.wait_for(
                lambda: len(self.states) >= count or self._target_output_ended, timeout
            )
            return len(self.states) >= count

    def kill(self, which: Which, signum: int = signal.SIGKILL) -> None:
        """Signal the tap, the target or both (a no-op for a process that has ended)."""
        processes = {"tap": [self.tap], "target": [self.target], "both": [self.tap, self.target]}
        self._tap_signalled = self._tap_signalled or which != "target"
        for process in processes[which]:
            if process.poll() is None:
                try:
                    process.send_signal(signum)
                except ProcessLookupError:
                    continue
        self.killed.append(f"{which}:{signal.Signals(signum).name}")

    def wait(self, timeout: float = RUN_TIMEOUT_SECONDS) -> PipelineResult:
        try:
            tap_code = self.tap.wait(timeout=timeout)
            self._relay.join(timeout=timeout)
            target_code = self.target.wait(timeout=timeout)
            self._states.join(timeout=timeout)
        finally:
            for process in (self.tap, self.target):
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=10)
        FIGURES.pipeline_runs += 1
        return PipelineResult(
            tap_code, target_code, self._tap_stderr_path.read_text(errors="replace"),
            self._target_stderr_path.read_text(errors="replace"), list(self.states),
            self.records_relayed, ", ".join(self.killed),
        )  # fmt: skip


class Pipeline:
    """The same `tap | target` command, run as often as a drill needs (same files, same
    registry), each run resuming from the STATE the caller passes, as Meltano would."""

    def __init__(self, workdir: Path, tap_config: dict[str, Any], target_config: dict[str, Any]):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.tap_config = tap_config
        self.target_config = target_config
        self.runs = 0

    def _write(self, name: str, value: dict[str, Any]) -> Path:
        path = self.workdir / f"{name}-{self.runs}.json"
        path.write_bytes(orjson.dumps(value))
        return path

    def start(
        self, state: dict[str, Any] | None = None, *, kill_tap_after_records: int | None = None
    ) -> RunningPipeline:
        self.runs += 1
        tap_args = ["--config", str(self._write("tap-config", self.tap_config))]
        if state is not None:
            tap_args += ["--state", str(self._write("state", state))]
        target_args = ["--config", str(self._write("target-config", self.target_config))]
        return RunningPipeline(
            self.workdir, tap_args, target_args, self.runs,
            kill_tap_after_records=kill_tap_after_records,
        )  # fmt: skip

    def run(self, state: dict[str, Any] | None = None) -> PipelineResult:
        return self.start(state).wait()

    def output_files(self) -> Iterator[Path]:
        """Every file the runs wrote (logs, STATE and config files excepted by the caller)."""
        yield from (p for p in self.workdir.rglob("*") if p.is_file())


# --- what reached PostHog -------------------------------------------------------------------


def event_uuid_counts(posthog: PostHogStandIn) -> Counter[str]:
    return Counter(e["uuid"] for e in posthog.events if is_export_event(e))


def alias_copies(posthog: PostHogStandIn) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Every alias PostHog received, grouped by its (device, user) pair."""
    copies: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for event in posthog.aliases():
        device = event["properties"].get("alias") or event["properties"].get("$anon_distinct_id")
        copies[(device, event["distinct_id"])].append(event)
    return copies


def expected_alias_devices(store: ExportStore) -> set[str]:
    """Devices a correct migration ties to a user (each to exactly one)."""
    return {
        record["device_id"]
        for record in store.iter_events()
        if record.get("device_id") and record.get("user_id")
        and record["device_id"] != record["user_id"]
    }  # fmt: skip


# A claim is in the registry from the moment a run takes it; PostHog has it once confirmed.
_CONFIRMED_PAIRS = "SELECT device_id, user_id FROM aliases WHERE confirmed_at IS NOT NULL"


def registry_pairs(path: Path) -> set[tuple[str, str]]:
    """The (device, user) pairs PostHog confirmed, per the alias registry (read-only; the
    file is not changed)."""
    if not path.exists():
        return set()
    connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return set(connection.execute(_CONFIRMED_PAIRS).fetchall())
    finally:
        connection.close()


def assert_registry_intact(path: Path) -> None:
    """The registry a kill left behind is a sound SQLite database in WAL mode."""
    connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        connection.close()


def assert_delivered_exactly(
    posthog: PostHogStandIn,
    store: ExportStore,
    *,
    excluded: set[str] | frozenset[str] = frozenset(),
) -> None:
    """Every uuid of the export (but `excluded`) reached PostHog, and re-sends collapse.

    Re-sends are legitimate after a kill (a batch stored, its answer or STATE lost): they must
    be the same PostHog event, so unique_events() (PostHog's ReplacingMergeTree) keeps one.
    Counts the re-sends into the session's figures.
    """
    counts = event_uuid_counts(posthog)
    expected = store.uuids() - excluded
    missing = expected - set(counts)
    assert not missing, f"{len(missing)} events lost, e.g. {sorted(missing)[:3]}"
    assert set(counts) == expected, f"unexpected events: {sorted(set(counts) - expected)[:3]}"
    unique = [e for e in posthog.unique_events() if is_export_event(e)]
    assert len(unique) == len(expected), "a re-sent event differs from the first copy"
    resent = sum(n - 1 for n in counts.values())
    FIGURES.events_resent += resent
    FIGURES.duplicates_collapsed += resent


@dataclass(frozen=True)
class ResumePoint:
    """What had happened when a killed run ended: the registry's pairs, PostHog's event count."""

    recorded_pairs: frozenset[tuple[str, str]]
    events_held: int

    @classmethod
    def after_kill(cls, posthog: PostHogStandIn, registry: Path) -> ResumePoint:
        if registry.exists():  # a kill before the target opened it leaves none
            assert_registry_intact(registry)
        return cls(frozenset(registry_pairs(registry)), len(posthog.events))


def assert_aliases_once(
    posthog: PostHogStandIn,
    store: ExportStore,
    resumes: list[ResumePoint] = (),  # type: ignore[assignment]
) -> int:
    """One alias per device; a repeat only as the same PostHog event; returns the repeats.

    An alias is repeated legitimately only when a kill fell between PostHog storing it and the
    registry recording it; then it carries the same uuid, timestamp and distinct_id, so PostHog
    collapses it. A pair the registry had recorded before a resume is never sent after it.
    """
    copies = alias_copies(posthog)
    devices = [device for device, _ in copies]
    assert len(devices) == len(set(devices)), "a device was aliased to two users"
    assert set(devices) <= expected_alias_devices(store)
    repeats = 0
    for pair, sent in copies.items():
        first = sent[0]
        for again in sent[1:]:
            assert (again["uuid"], again["timestamp"], again["distinct_id"]) == (
                first["uuid"], first["timestamp"], first["distinct_id"],
            ), f"alias {pair} re-sent as a different PostHog event"  # fmt: skip
            repeats += 1
    events = posthog.events
    for resume in resumes:
        again = [
            pair
            for event in events[resume.events_held :]
            if event["event"] in ALIAS_EVENTS
            and (pair := (event["properties"].get("alias"), event["distinct_id"]))
            in resume.recorded_pairs
        ]
        assert not again, f"aliases the registry had recorded were sent again: {again[:3]}"
    collapsed = [e for e in posthog.unique_events() if e["event"] in ALIAS_EVENTS]
    assert len(collapsed) == len(copies)
    FIGURES.aliases_resent += repeats
    FIGURES.duplicates_collapsed += repeats
    return repeats


def dead_letters(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def outputs_of(*results: PipelineResult) -> str:
    """Everything the runs wrote to stdout (STATE) and stderr, as one text."""
    return "\n".join(
        r.tap_stderr + r.target_stderr + orjson.dumps(r.states).decode() for r in results
    )


def assert_no_secret_in(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret leaked into {where}"


def file_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


class KillSwitch:
    """A one-shot signal to part of a pipeline, safe to fire from a stand-in's server thread.

    Armed with the running pipeline after it starts; a fire that comes first waits for it.
    """

    def __init__(self, which: Which, signum: int = signal.SIGKILL) -> None:
        self.which = which
        self.signum = signum
        self.fired = threading.Event()
        self._pipeline: RunningPipeline | None = None
        self._wanted = False
        self._lock = threading.Lock()

    def arm(self, pipeline: RunningPipeline) -> None:
        with self._lock:
            self._pipeline = pipeline
            if self._wanted:
                self._fire_locked()

    def fire(self) -> None:
        with self._lock:
            self._wanted = True
            if self._pipeline is not None:
                self._fire_locked()

    def _fire_locked(self) -> None:
        if not self.fired.is_set():
            assert self._pipeline is not None
            self._pipeline.kill(self.which, self.signum)
            self.fired.set()


_EVENT_TIME_FIELDS = ("event_time", "client_event_time", "server_received_time")


def _is_amplitude_time(value: object) -> bool:
    try:
        datetime.strptime(str(value or ""), "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    except ValueError:
        return False
    return True


def why_unsendable(record: dict[str, Any]) -> str:
    """The reason a correct target gives for not sending a raw record ('' if it can be sent)."""
    if not record.get("event_type"):
        return "no event_type"
    # A group update ($groupidentify) concerns a group, not a person: it needs no id.
    no_ids = not record.get("user_id") and not record.get("device_id")
    if no_ids and record["event_type"] != "$groupidentify":
        return "neither user_id nor device_id"
    if not any(_is_amplitude_time(record.get(field)) for field in _EVENT_TIME_FIELDS):
        return "no time"
    if not isinstance(record.get("event_properties"), dict):
        return "event_properties is not an object"
    if len(orjson.dumps(record)) > 1_000_000:
        return "PostHog accepts at most"
    return ""


# --- fixtures shared by the reliability modules (import them into a module to use them) ----

DRILL_HOURS = 24
DRILL_EVENTS = 1_200


def build_drill_store(directory: Path, **spec: Any) -> ExportStore:
    """24 hours, 1,200 events: twelve 2-hour windows of about 100 events each."""
    values: dict[str, Any] = {"hours": DRILL_HOURS, "events": DRILL_EVENTS, "seed": 61}
    values.update(spec)
    return ExportStore.build(directory, ExportSpec(start=DRILL_START, **values))


@pytest.fixture(scope="session")
def drill_store(tmp_path_factory: pytest.TempPathFactory) -> ExportStore:
    """Shared by the drills, so never modified by one."""
    return build_drill_store(tmp_path_factory.mktemp("drill-export"))


def serve_export(store: ExportStore) -> Iterator[AmplitudeStandIn]:
    """The Export API stand-in serving `store` with the drills' keys (for a fixture to yield)."""
    with AmplitudeStandIn(store, AMPLITUDE_KEY, AMPLITUDE_SECRET) as server:
        yield server
        count_faults_fired(server)


@pytest.fixture
def amplitude(drill_store: ExportStore) -> Iterator[AmplitudeStandIn]:
    yield from serve_export(drill_store)


@pytest.fixture
def posthog() -> Iterator[PostHogStandIn]:
    with PostHogStandIn(api_key=POSTHOG_KEY) as server:
        yield server
        count_faults_fired(server)


@pytest.fixture
def pipeline(tmp_path: Path, amplitude: AmplitudeStandIn, posthog: PostHogStandIn) -> Pipeline:
    """The drill pipeline: the shared export into the test's own PostHog and registry."""
    return drill_pipeline(tmp_path / "run", amplitude, posthog)
