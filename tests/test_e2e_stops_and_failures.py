"""Stops and failures of the real `meltano run` while the target is slower than the tap.

A throttled migration runs for days, so the target is always slower than the tap: the tap sits
blocked writing into a full pipe. Ctrl-C (SIGINT to the whole process group) or a supervisor's
SIGTERM (to the group, or to Meltano alone) must end the job within seconds, with one line saying
where the next run resumes, a non-zero exit code, no traceback, and a resume that loses nothing.
A failure on PostHog's side must end with the plugin's line naming the cause, not with Meltano's
BrokenPipeError tracebacks (Meltano 4.4 prints them when the target stops before its input ends).
"""

from __future__ import annotations

import datetime as dt
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.meltano_harness import (
    AMPLITUDE_KEY,
    AMPLITUDE_SECRET,
    POSTHOG_KEY,
    REPO_ROOT,
    MeltanoProject,
    blocked_writing_to_a_pipe,
    install_plugins,
    tap_settings,
    target_settings,
)
from tests.target_support import is_export_event
from tests.testbed.amplitude import AmplitudeStandIn
from tests.testbed.generator import ExportSpec, ExportStore
from tests.testbed.posthog import PostHogStandIn

pytestmark = pytest.mark.e2e

START = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
HOURS = 48
STOP_SECONDS = 10  # "within seconds": Meltano itself needs about one to wind down


@pytest.fixture(scope="module", autouse=True)
def _plugins_installed() -> None:
    install_plugins()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ExportStore:
    # More output than Meltano's buffer, the pipes and the target's read-ahead hold together.
    folder = tmp_path_factory.mktemp("export")
    return ExportStore.build(folder, ExportSpec(start=START, hours=HOURS, events=8_000))


@pytest.fixture
def amplitude(store: ExportStore) -> Iterator[AmplitudeStandIn]:
    with AmplitudeStandIn(store, api_key=AMPLITUDE_KEY, secret_key=AMPLITUDE_SECRET) as server:
        yield server


@pytest.fixture
def posthog() -> Iterator[PostHogStandIn]:
    with PostHogStandIn(api_key=POSTHOG_KEY) as server:
        yield server


@pytest.fixture
def project(tmp_path: Path, amplitude: AmplitudeStandIn, posthog: PostHogStandIn) -> MeltanoProject:
    settings = tap_settings(amplitude.url, START, START + dt.timedelta(hours=HOURS))
    settings |= target_settings(posthog.url, tmp_path / "out")
    settings |= {
        "TARGET_POSTHOG_MAX_EVENTS_PER_MINUTE": "12000",  # 200 events/s: far slower than the tap
        "TAP_AMPLITUDE_WINDOW_HOURS": "2",  # windows complete (and checkpoint) before the stop
        "MELTANO_ELT_BUFFER_SIZE": str(1 << 20),
    }
    return MeltanoProject(workdir=tmp_path, environment="prod", settings=settings)


def non_alias_uuids(posthog: PostHogStandIn) -> set[str]:
    return {e["uuid"] for e in posthog.events if is_export_event(e)}


@pytest.mark.parametrize(
    ("signum", "whole_group", "exit_code"),
    [
        (signal.SIGINT, True, 1),  # Ctrl-C in the terminal; Meltano exits 1 on SIGINT
        (signal.SIGTERM, True, 143),  # a supervisor stopping the whole group
        (signal.SIGTERM, False, 143),  # a supervisor stopping Meltano alone (systemd, k8s)
        (signal.SIGINT, False, 1),  # kill -INT to Meltano alone
    ],
    ids=["ctrl-c-group", "sigterm-group", "sigterm-meltano", "sigint-meltano"],
)
def test_a_stop_request_ends_a_throttled_run_within_seconds_and_resumes(
    project: MeltanoProject,
    store: ExportStore,
    posthog: PostHogStandIn,
    signum: int,
    whole_group: bool,
    exit_code: int,
) -> None:
    def tap_blocked_after_two_windows(group: int) -> bool:
        # Two 2-hour windows confirmed (a STATE stored), and the tap blocked on a full pipe.
        return posthog.event_count > 700 and blocked_writing_to_a_pipe(group, "tap-amplitude")

    result, seconds = project.run_job_stopping(
        tap_blocked_after_two_windows,
        signum,
        whole_group=whole_group,
    )
    output = result.stdout
    assert result.returncode != -signal.SIGKILL, f"the stop request hung:\n{output[-3000:]}"
    assert seconds < STOP_SECONDS, output[-3000:]
    assert result.returncode == exit_code, output[-3000:]
    assert "Traceback" not in output and "BrokenPipeError" not in output, output[-6000:]
    name = signal.Signals(signum).name if whole_group else "SIGTERM"  # Meltano relays SIGTERM
    (said,) = [line for line in output.splitlines() if "target-posthog stopped on" in line]
    assert f"target-posthog stopped on {name}; the next run resumes from" in said
    # The line names the last STATE the target emitted; Meltano stored it or an earlier one
    # (being stopped too, it may drop the target's last lines unread).
    said_bookmark = said.split("resumes from events ", 1)[1].split(" or earlier", 1)[0]
    stored = project.stored_state()["singer_state"]["bookmarks"]["events"]
    assert START.isoformat() < stored["replication_key_value"] <= said_bookmark, said
    sent_before = non_alias_uuids(posthog)
    assert 0 < len(sent_before) < len(store.uuids())

    del project.settings["TARGET_POSTHOG_MAX_EVENTS_PER_MINUTE"]
    resumed = project.run_job(force=True)  # the stopped job's record may still say "running"
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert non_alias_uuids(posthog) == store.uuids(), "events were lost across the stop"


def test_a_posthog_failure_ends_with_the_cause_not_a_traceback(
    project: MeltanoProject, posthog: PostHogStandIn
) -> None:
    project.settings["TARGET_POSTHOG_API_KEY"] = "phc_not_this_project"
    del project.settings["TARGET_POSTHOG_MAX_EVENTS_PER_MINUTE"]
    result = project.run_job()
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "Traceback" not in output and "BrokenPipeError" not in output, output[-6000:]
    lines = output.splitlines()
    (cause,) = [i for i, line in enumerate(lines) if "PostHog refused the project API key" in line]
    assert "target-posthog failed:" in lines[cause]
    assert "check `api_key` is the project API key" in lines[cause]
    # After it, nothing from the target, nothing but Meltano's closing lines (the tap, killed by
    # Meltano at that moment, may still log the window it was reading).
    after = [line for line in lines[cause + 1 :] if line.strip() and " tap-amplitude " not in line]
    assert [line.split(" meltano ", 1)[-1].strip() for line in after] == [
        "Loader failed",
        "Block run completed",
        "Run completed",
    ], after
    assert posthog.event_count == 0


def test_a_killed_run_leaves_no_key_in_meltanos_run_folder(
    project: MeltanoProject, posthog: PostHogStandIn
) -> None:
    """Meltano writes each plugin's config, keys included, under .meltano/run/ and deletes it
    only when the run ends normally; the plugins delete it once they have read it."""
    run_folder = REPO_ROOT / ".meltano" / "run"
    started = time.time() - 1
    killed = project.run_job_until(lambda: posthog.event_count > 0)
    assert killed.returncode == -signal.SIGKILL
    written = [
        path for path in run_folder.rglob("*") if path.is_file() and path.stat().st_mtime > started
    ]
    assert written, "Meltano wrote nothing under .meltano/run/ (the test would prove nothing)"
    for path in written:
        content = path.read_bytes()
        for secret in (AMPLITUDE_KEY, AMPLITUDE_SECRET, POSTHOG_KEY):
            assert secret.encode() not in content, f"{path.name} holds a key after a kill"
    # The next runs' config files are written where only the owner can read them.
    assert run_folder.stat().st_mode & 0o077 == 0
