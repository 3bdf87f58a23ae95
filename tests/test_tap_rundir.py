"""The tap's downloads live in one folder per run, removed on every exit the tap survives; the
next run removes what killed runs left, never the folder of a run still going."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from tap_amplitude.rundir import LOCK_NAME, PREFIX, UNLOCKED_GRACE_SECONDS, RunFolder

from tests.conftest import TAP_DAY, start_tap, tap_config, write_tap_files
from tests.testbed.amplitude import AmplitudeStandIn
from tests.testbed.faults import Fault

END = TAP_DAY.replace(day=TAP_DAY.day + 3).isoformat()


@pytest.fixture
def tmpdir_for_tap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temp folder the tap's child processes use (TMPDIR), empty at the start."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    return folder


def run_folders(folder: Path) -> list[Path]:
    return sorted(folder.glob(PREFIX + "*"))


def start(amplitude: AmplitudeStandIn, workdir: Path, **config: object) -> subprocess.Popen[bytes]:
    args = write_tap_files(workdir, tap_config(amplitude, end_date=END, **config), None)
    return start_tap(args, stderr=subprocess.PIPE)


def wait_for_download(folder: Path, timeout: float = 20.0, skip: Path | None = None) -> Path:
    """The run folder (other than `skip`), once a download has started writing into it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in run_folders(folder):
            with contextlib.suppress(FileNotFoundError):
                if run != skip and any(p.name != LOCK_NAME for p in run.iterdir()):
                    return run
        time.sleep(0.02)
    raise AssertionError("no download started")


def finish(tap: subprocess.Popen[bytes], timeout: float = 60.0) -> tuple[int, bytes]:
    _, stderr = tap.communicate(timeout=timeout)
    return tap.returncode, stderr


def test_a_finished_run_leaves_nothing(amplitude_api: AmplitudeStandIn, tmp_path, tmpdir_for_tap):
    code, stderr = finish(start(amplitude_api, tmp_path / "run"))
    assert code == 0, stderr
    assert list(tmpdir_for_tap.iterdir()) == []


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "refused keys", "reader gone"])
def test_every_exit_the_tap_survives_removes_its_folder(
    how: str, amplitude_api: AmplitudeStandIn, tmp_path: Path, tmpdir_for_tap: Path
) -> None:
    if how == "refused keys":
        code, stderr = finish(start(amplitude_api, tmp_path / "run", secret_key="wrong"))
        assert code == 1, stderr
        assert list(tmpdir_for_tap.iterdir()) == []
        return
    amplitude_api.inject(Fault.stall(30))  # half an archive, then silence: a download in flight
    # The reader goes away mid-download; the tap finds out when the retry's records are written.
    timeout = 1 if how == "reader gone" else 10
    tap = start(amplitude_api, tmp_path / "run", request_timeout=timeout)
    wait_for_download(tmpdir_for_tap)
    if how == "reader gone":
        assert tap.stdout is not None
        tap.stdout.close()
        amplitude_api.clear_faults()
    else:
        tap.send_signal(getattr(signal, how))
    code, stderr = finish(tap)
    assert code != 0
    assert b"Traceback" not in stderr, stderr
    assert list(tmpdir_for_tap.iterdir()) == []


def test_the_next_run_removes_a_killed_runs_folder_but_never_a_live_ones(
    amplitude_api: AmplitudeStandIn, tmp_path: Path, tmpdir_for_tap: Path
) -> None:
    amplitude_api.inject(Fault.stall(30), times=2)
    killed = start(amplitude_api, tmp_path / "killed")
    left = wait_for_download(tmpdir_for_tap)
    killed.send_signal(signal.SIGKILL)
    finish(killed)
    assert left.exists()  # a kill leaves its partial download behind
    left_bytes = sum(p.stat().st_size for p in left.iterdir())
    assert left_bytes > 0

    live = start(amplitude_api, tmp_path / "live")  # stalls too: a run still going
    live_folder = wait_for_download(tmpdir_for_tap, skip=left)
    assert not left.exists()  # the live run removed the killed run's folder as it started

    code, stderr = finish(start(amplitude_api, tmp_path / "third"))  # a whole run meanwhile
    assert code == 0, stderr
    assert live_folder.exists()  # never a folder whose run still holds its lock
    live.send_signal(signal.SIGTERM)
    _, live_log = finish(live)
    assert f"Removed {left} left by a tap run that was killed ({left_bytes} bytes".encode() in (
        live_log
    )
    assert list(tmpdir_for_tap.iterdir()) == []


def test_folders_without_a_lock_go_only_once_idle(tmp_path: Path) -> None:
    """Earlier versions' folders and half-made ones have no lock to ask."""
    old = tmp_path / "tap-amplitude-k3j9x_2q"  # tempfile.mkdtemp's name, earlier versions
    fresh = tmp_path / "tap-amplitude-a8c1zz0p"
    staging = tmp_path / ".tap-amplitude-new-abc12345"
    unrelated = tmp_path / "tap-amplitude-notes"
    for folder in (old, fresh, staging, unrelated):
        folder.mkdir()
        (folder / "export.zip").write_bytes(b"x" * 100)
    idle = time.time() - UNLOCKED_GRACE_SECONDS - 60
    for path in (old, old / "export.zip", staging, staging / "export.zip"):
        os.utime(path, (idle, idle))

    run = RunFolder.create(tmp_path)
    try:
        assert not old.exists()
        assert not staging.exists()
        assert fresh.exists()
        assert unrelated.exists()
        assert run.path.name.startswith(PREFIX)
        assert (run.path / LOCK_NAME).read_text() == f"{os.getpid()}\n"
        # Another run's sweep cannot take the lock of a folder whose run is alive.
        other = RunFolder.create(tmp_path)
        assert run.path.exists()
        other.remove()
    finally:
        run.remove()
    assert not run.path.exists()
