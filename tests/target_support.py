"""Helpers for the target-posthog tests: tap-style Singer input; the real CLI in a subprocess."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from tap_amplitude.conform import Conformer
from tap_amplitude.schema import EVENTS_SCHEMA
from tap_amplitude.times import normalise_record

from tests.testbed.generator import ExportSpec, generate_events
from tests.testbed.posthog import PostHogStandIn

TARGET = Path(sys.executable).parent / "target-posthog"
POSTHOG_KEY = "phc_target_tests_secret_key_4711"
START = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
ALIAS_EVENTS = {"$create_alias", "$identify"}
UPDATE_MARKER = "amplitude_migration_update"  # target_posthog.profiles.UPDATE_MARKER


def is_export_event(event: dict[str, Any]) -> bool:
    """An event of the export: not an alias, nor a person or group update the target adds."""
    return event["event"] not in ALIAS_EVENTS and UPDATE_MARKER not in event["properties"]


SCHEMA = {
    "type": "SCHEMA",
    "stream": "events",
    "key_properties": ["uuid"],
    "schema": {
        "type": "object",
        "properties": {"uuid": {"type": "string"}},
        "additionalProperties": True,
    },
}


_CONFORM = Conformer(EVENTS_SCHEMA)


def as_tap_record(raw: dict[str, Any]) -> dict[str, Any]:
    """A raw Amplitude record exactly as tap-amplitude emits it (times in RFC 3339 UTC, each
    field of its one schema type, other fields in `additional_properties`)."""
    return _CONFORM(normalise_record(dict(raw)), orjson.dumps(raw))


def tap_records(
    events: int, *, seed: int = 7, hours: int = 6, invalid_fraction: float = 0.0
) -> list[dict[str, Any]]:
    spec = ExportSpec(
        start=START, hours=hours, events=events, seed=seed, invalid_fraction=invalid_fraction
    )
    return [as_tap_record(raw) for raw in generate_events(spec)]


def record(value: dict[str, Any]) -> dict[str, Any]:
    return {"type": "RECORD", "stream": "events", "record": value}


def state(value: dict[str, Any]) -> dict[str, Any]:
    return {"type": "STATE", "value": value}


def messages_with_states(records: list[dict[str, Any]], every: int) -> list[dict[str, Any]]:
    """SCHEMA, then the records with a STATE {"done": n} after every `every` records."""
    messages: list[dict[str, Any]] = [SCHEMA]
    for n, value in enumerate(records, start=1):
        messages.append(record(value))
        if n % every == 0 or n == len(records):
            messages.append(state({"done": n}))
    return messages


@pytest.fixture
def posthog() -> Iterator[PostHogStandIn]:
    """A PostHog capture stand-in that takes the target tests' key."""
    with PostHogStandIn(api_key=POSTHOG_KEY) as server:
        yield server


def target_config(
    tmp_path: Path, posthog: PostHogStandIn | None = None, **overrides: Any
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "api_key": POSTHOG_KEY,
        "host": posthog.url if posthog else "http://127.0.0.1:9",
        "alias_registry": str(tmp_path / "aliases.sqlite"),
        "dead_letter_path": str(tmp_path / "dead-letter.jsonl"),
        "retry_base_seconds": 0.01,
        "request_timeout": 5,
        "max_retries": 4,
        "batch_size": 50,
    }
    config.update(overrides)
    return config


@dataclass
class TargetRun:
    """What one run of the CLI produced, and what the stand-in held as each STATE came out."""

    returncode: int
    states: list[dict[str, Any]]
    stdout: str
    stderr: str
    # For each STATE line: the uuids the stand-in had stored at the moment the line was read.
    stored_when_emitted: list[set[str]] = field(default_factory=list)


def start_target(
    config: dict[str, Any], tmp_path: Path, preexec_fn: Callable[[], None] | None = None
) -> subprocess.Popen[bytes]:
    config_path = tmp_path / f"target-config-{time.monotonic_ns()}.json"
    config_path.write_text(json.dumps(config))
    return subprocess.Popen(
        [str(TARGET), "--config", str(config_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=preexec_fn,
    )


class StateWatcher:
    """Reads the target's stdout as it comes; snapshots the stand-in at each STATE line."""

    def __init__(self, process: subprocess.Popen[bytes], posthog: PostHogStandIn | None) -> None:
        self.states: list[dict[str, Any]] = []
        self.snapshots: list[set[str]] = []
        self.lines: list[str] = []
        self._posthog = posthog
        self._process = process
        self._new_state = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for raw in self._process.stdout:
            snapshot = self._posthog.accepted_uuids() if self._posthog else set()
            line = raw.decode()
            self.lines.append(line)
            with self._new_state:
                self.states.append(json.loads(line))
                self.snapshots.append(snapshot)
                self._new_state.notify_all()

    def wait_for_states(self, count: int, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        with self._new_state:
            while len(self.states) < count and time.monotonic() < deadline:
                self._new_state.wait(0.1)
            return len(self.states) >= count

    def join(self) -> None:
        self._thread.join(timeout=30)


def run_target(
    config: dict[str, Any],
    messages: list[dict[str, Any]],
    tmp_path: Path,
    posthog: PostHogStandIn | None = None,
    timeout: float = 60,
    preexec_fn: Callable[[], None] | None = None,
) -> TargetRun:
    """Feed Singer messages to the real `target-posthog` CLI and wait for it to exit."""
    process = start_target(config, tmp_path, preexec_fn)
    watcher = StateWatcher(process, posthog)
    assert process.stdin is not None and process.stderr is not None
    try:
        process.stdin.write(b"".join(orjson.dumps(m) + b"\n" for m in messages))
        process.stdin.close()
    except BrokenPipeError:  # the target stopped early (e.g. a 401): its exit code says why
        pass
    stderr = process.stderr.read().decode()
    process.wait(timeout=timeout)
    watcher.join()
    return TargetRun(
        process.returncode, watcher.states, "".join(watcher.lines), stderr, watcher.snapshots
    )


def send_signal_and_finish(
    process: subprocess.Popen[bytes], signum: int = signal.SIGTERM, timeout: float = 30
) -> tuple[int, str]:
    process.send_signal(signum)
    assert process.stderr is not None
    stderr = process.stderr.read().decode()
    return process.wait(timeout=timeout), stderr


def uuids_of(records: list[dict[str, Any]]) -> list[str]:
    return [r["uuid"] for r in records]


def delivered(posthog: PostHogStandIn) -> list[dict[str, Any]]:
    """Events other than aliases, as stored by the stand-in (duplicates included)."""
    return [e for e in posthog.events if is_export_event(e)]
