"""Security drills: distinctive fake secrets never show up in anything the pipeline writes
(logs, STATE, dead letters, dry-run payloads, --about, Meltano's own logs), plain http is
refused for real hosts, and the files holding user data are readable by their owner only.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import TAP_AMPLITUDE
from tests.meltano_harness import (
    REPO_ROOT,
    MeltanoProject,
    install_plugins,
    tap_settings,
    target_settings,
)
from tests.pipeline_harness import (
    AMPLITUDE_KEY,
    AMPLITUDE_SECRET,
    DRILL_HOURS,
    DRILL_START,
    POSTHOG_KEY,
    SECRETS,
    KillSwitch,
    Pipeline,
    PipelineResult,
    amplitude,
    assert_delivered_exactly,
    build_drill_store,
    drill_store,
    drill_tap_config,
    drill_target_config,
    file_mode,
    outputs_of,
    pipeline,
    posthog,
)
from tests.target_support import TARGET
from tests.testbed.amplitude import AmplitudeStandIn
from tests.testbed.faults import Fault
from tests.testbed.posthog import PostHogStandIn
from tests.testbed.store import ExportStore

__all__ = ["amplitude", "drill_store", "pipeline", "posthog"]  # fixtures used by name

pytestmark = pytest.mark.timeout(180)

# Files that hold the secrets by design: the config files the runs were given.
_CONFIG_FILE_PREFIXES = ("tap-config-", "target-config-")


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret leaked into {where}"


def assert_no_secret_in_files(folder: Path) -> list[Path]:
    """Scan every file the runs wrote (but their config files); return what was scanned."""
    scanned = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.name.startswith(_CONFIG_FILE_PREFIXES):
            continue
        assert_no_secret(path.read_bytes().decode(errors="replace"), str(path))
        scanned.append(path)
    return scanned


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """The plugins must not rely on the user's umask for private files."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("permissive_umask")
def test_no_secret_in_any_output_and_private_files_are_user_only(tmp_path: Path) -> None:
    """Faults, dead letters, a kill, a resume, a dry run, refused keys: then scan it all."""
    store = build_drill_store(tmp_path / "export", invalid_fraction=0.03, seed=63)
    workdir = tmp_path / "run"
    results: list[PipelineResult] = []
    with (
        AmplitudeStandIn(store, AMPLITUDE_KEY, AMPLITUDE_SECRET) as api,
        PostHogStandIn(api_key=POSTHOG_KEY) as capture,
    ):
        pipeline = Pipeline(
            workdir, drill_tap_config(api, DRILL_HOURS), drill_target_config(workdir, capture)
        )
        for fault in (Fault.status(503), Fault.drop(), Fault.truncate()):
            api.inject(fault)
        capture.inject(Fault.status(429, retry_after=0.1))
        capture.inject(Fault.lose_ack())
        switch = KillSwitch("target", signal.SIGTERM)
        capture.on_stored = lambda request: switch.fire() if request.seq == 6 else None
        running = pipeline.start()
        switch.arm(running)
        results.append(running.wait())
        capture.on_stored = None
        results.append(pipeline.run(results[-1].last_state))
        assert results[-1].ok, results[-1].describe()
        dead_lettered = {r["uuid"] for r in store.iter_events() if not r.get("event_type")}
        assert dead_lettered
        letters = Path(pipeline.target_config["dead_letter_path"])

        # A dry run of the same export writes the payloads instead of sending them.
        dry = Pipeline(
            tmp_path / "dry",
            drill_tap_config(api, DRILL_HOURS),
            drill_target_config(
                tmp_path / "dry", capture, dry_run_path=str(tmp_path / "dry" / "payloads.jsonl")
            ),
        )
        results.append(dry.run())
        assert results[-1].ok, results[-1].describe()
        payloads = tmp_path / "dry" / "payloads.jsonl"
        assert payloads.stat().st_size > 0

        # Refused keys: the error paths must not echo them either.
        refused = Pipeline(
            tmp_path / "refused",
            drill_tap_config(api, DRILL_HOURS),
            drill_target_config(tmp_path / "refused", capture, api_key=POSTHOG_KEY + "x"),
        )
        results.append(refused.run())
        assert results[-1].target_returncode == 1
        refused.tap_config["secret_key"] = AMPLITUDE_SECRET + "x"
        results.append(refused.run())
        assert results[-1].tap_returncode == 1

    assert_no_secret(outputs_of(*results), "a log or a STATE line")
    scanned = assert_no_secret_in_files(tmp_path)
    assert letters in scanned and payloads in scanned
    for about in plugin_about_outputs(pipeline):
        assert_no_secret(about, "--about")

    registry = Path(pipeline.target_config["alias_registry"])
    for private in (registry, letters, payloads):
        assert file_mode(private) == 0o600, f"{private.name} is {oct(file_mode(private))}"
    for companion in registry.parent.glob(registry.name + "-*"):  # SQLite's -wal and -shm
        assert file_mode(companion) == 0o600, f"{companion.name} is {oct(file_mode(companion))}"


def plugin_about_outputs(pipeline: Pipeline) -> Iterator[str]:
    """`--about` of both plugins, given the run's config (secrets included)."""
    configs = (
        sorted(pipeline.workdir.glob("tap-config-*.json"))[-1],
        sorted(pipeline.workdir.glob("target-config-*.json"))[-1],
    )
    for executable, config in zip((TAP_AMPLITUDE, TARGET), configs, strict=True):
        for about_format in ("json", "markdown"):
            done = subprocess.run(
                [str(executable), "--about", "--format", about_format, "--config", str(config)],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            yield done.stdout + done.stderr


@pytest.mark.parametrize(
    ("plugin", "setting", "url", "message"),
    [
        ("tap", "api_url", "http://amplitude.example.com", "api_url must use https"),
        ("target", "host", "http://posthog.example.com", "https"),
    ],
)
def test_plain_http_is_refused_for_real_hosts_before_any_work(
    plugin: str,
    setting: str,
    url: str,
    message: str,
    pipeline: Pipeline,
    posthog: PostHogStandIn,
) -> None:
    """Plain http only for 127.0.0.1/localhost (every other drill runs on it)."""
    (pipeline.tap_config if plugin == "tap" else pipeline.target_config)[setting] = url
    failed = pipeline.run()
    stderr = failed.tap_stderr if plugin == "tap" else failed.target_stderr
    assert (failed.tap_returncode if plugin == "tap" else failed.target_returncode) != 0
    assert any(message in line and url.split("//")[1] in line for line in stderr.splitlines()), (
        stderr[-2000:]
    )
    assert "Traceback" not in stderr
    assert failed.records_relayed == 0 or plugin == "target"  # a refused target reads nothing
    assert posthog.requests == [] and failed.states == []


@pytest.fixture(scope="module")
def meltano_plugins() -> None:
    """The plugin virtualenvs under .meltano/ (editable installs: code changes are live)."""
    if not all(
        (REPO_ROOT / ".meltano" / kind / name).is_dir()
        for kind, name in (("extractors", "tap-amplitude"), ("loaders", "target-posthog"))
    ):
        install_plugins()  # fmt: skip


@pytest.mark.e2e
@pytest.mark.usefixtures("meltano_plugins")
def test_meltano_logs_of_a_run_hold_no_secret(
    tmp_path: Path, drill_store: ExportStore, amplitude: AmplitudeStandIn, posthog: PostHogStandIn
) -> None:
    drill_end = DRILL_START + timedelta(hours=DRILL_HOURS)
    settings = tap_settings(
        amplitude.url, DRILL_START, drill_end, api_key=AMPLITUDE_KEY, secret_key=AMPLITUDE_SECRET
    )
    settings |= target_settings(posthog.url, tmp_path / "out", api_key=POSTHOG_KEY)
    settings["TAP_AMPLITUDE_WINDOW_HOURS"] = "6"
    project = MeltanoProject(workdir=tmp_path, environment="prod", settings=settings)
    amplitude.inject(Fault.status(503))
    posthog.inject(Fault.status(500))
    result = project.run_job(timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert_delivered_exactly(posthog, drill_store)
    assert_no_secret(result.stdout + result.stderr, "Meltano's log of the run")
    assert_no_secret(str(project.stored_state()), "Meltano's stored state")
    assert_no_secret_in_files(tmp_path)
