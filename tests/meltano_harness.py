"""Drive the real `meltano run` of this repository against the local stand-ins.

Each test gets its own Meltano system database (so its own state) and its own output folder;
the plugin virtualenvs under `.meltano/` are shared and installed once per test session.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from scripts.sample_run import sealed_environment

REPO_ROOT = Path(__file__).resolve().parent.parent
MELTANO = Path(sys.executable).with_name("meltano")
JOB = ("tap-amplitude", "target-posthog")

# Keys the stand-ins accept. They are fake, but tests still check they never leak into output.
AMPLITUDE_KEY = "amp-test-key"
AMPLITUDE_SECRET = "amp-test-secret"
POSTHOG_KEY = "phc_test_key"


def tap_settings(
    api_url: str,
    start: dt.datetime,
    end: dt.datetime,
    *,
    api_key: str = AMPLITUDE_KEY,
    secret_key: str = AMPLITUDE_SECRET,
) -> dict[str, str]:
    """Meltano settings (environment variables) pointing tap-amplitude at a stand-in."""
    return {
        "TAP_AMPLITUDE_API_KEY": api_key,
        "TAP_AMPLITUDE_SECRET_KEY": secret_key,
        "TAP_AMPLITUDE_API_URL": api_url,
        "TAP_AMPLITUDE_START_DATE": start.isoformat(),
        # Stands for "now minus Amplitude's 2 h delay", fixed so that tests ignore today.
        "TAP_AMPLITUDE_END_DATE": end.isoformat(),
    }


def target_settings(host: str, out: Path, *, api_key: str = POSTHOG_KEY) -> dict[str, str]:
    """Meltano settings pointing target-posthog at a stand-in, its files under `out`."""
    return {
        "TARGET_POSTHOG_API_KEY": api_key,
        "TARGET_POSTHOG_HOST": host,
        "TARGET_POSTHOG_ALIAS_REGISTRY": str(out / "aliases.sqlite"),
        "TARGET_POSTHOG_DEAD_LETTER_PATH": str(out / "dead-letter.jsonl"),
    }


def meltano_command(workdir: Path | None, *args: str) -> list[str]:
    """`meltano ARGS` that ignores the repository's `.env`: a user's filled `.env` (the real
    migration's keys, start_date, limits) must not change what the tests do. `--env-file`
    replaces `.env` with a file of our own (empty)."""
    folder = workdir if workdir is not None else Path(tempfile.gettempdir())
    env_file = folder / "tests-no-dotenv.env"
    env_file.touch()
    return [str(MELTANO), "--env-file", str(env_file), *args]


def base_environment() -> dict[str, str]:
    """Environment shared by every Meltano invocation in the tests: quiet and offline."""
    env, _ = sealed_environment(os.environ)  # README command 1's sealing, one definition
    env.update(
        MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
        MELTANO_CLI_DISABLE_VERSION_CHECK="1",
        MELTANO_CLI_LOG_LEVEL="info",
        NO_COLOR="1",
    )
    return env


@dataclass
class MeltanoProject:
    """One isolated use of the repository's Meltano project (own state DB and outputs)."""

    workdir: Path
    environment: str = "prod"
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def state_id(self) -> str:
        return f"{self.environment}:tap-amplitude-to-target-posthog"

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = base_environment()
        env["MELTANO_DATABASE_URI"] = f"sqlite:///{self.workdir / 'meltano.db'}"
        env["MELTANO_ENVIRONMENT"] = self.environment
        env.update(self.settings)
        env.update(extra or {})
        return env

    def command(self, *args: str) -> list[str]:
        return meltano_command(self.workdir, *args)

    def run(
        self, *args: str, timeout: float = 240, extra_env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            cwd=REPO_ROOT,
            env=self.env(extra_env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def run_job(
        self, timeout: float = 240, *, force: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """`meltano run`; `force` after a killed run, whose job record Meltano still holds as
        running (it refuses a second run of the same job for 5 minutes otherwise)."""
        return self.run("run", *(["--force"] if force else []), *JOB, timeout=timeout)

    def run_job_until(
        self, condition: Callable[[], bool], *, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Start the job and SIGKILL its whole process group as soon as `condition()` holds.

        Killing the group takes down Meltano, the tap and the target at once, as a power cut
        or an OOM kill would. Meltano keeps the STATE it had stored before the kill.
        """

        def kill(group: int) -> bool:
            os.killpg(group, signal.SIGKILL)
            return True

        return self._run_job_with(condition, kill, timeout)

    def run_job_pausing(
        self,
        condition: Callable[[], bool],
        seconds: float,
        *,
        times: int = 1,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Start the job; once `condition()` holds, stop its whole process group (SIGSTOP) for
        `seconds`, as a laptop's sleep would, then let it go on (SIGCONT); `times` such pauses,
        a fifth of a second of running apart; then wait for its end."""

        def pause(group: int) -> bool:
            for _ in range(times):
                os.killpg(group, signal.SIGSTOP)
                time.sleep(seconds)
                os.killpg(group, signal.SIGCONT)
                time.sleep(0.2)
            return False

        return self._run_job_with(condition, pause, timeout)

    def run_job_stopping(
        self, condition: Callable[[int], bool], signum: int, *, whole_group: bool
    ) -> tuple[subprocess.CompletedProcess[str], float]:
        """Start the job; once `condition(group)` holds, send one stop request (`signum`) to
        its whole process group (Ctrl-C in a terminal) or to Meltano alone (a supervisor).
        Returns the result and the seconds from the request to Meltano's exit; a job still
        running after 60 s is killed and counts as hung (returncode -9)."""
        asked: list[float] = []

        def stop(group: int) -> bool:
            (os.killpg if whole_group else os.kill)(group, signum)
            asked.append(time.monotonic())
            return False

        # Generous: on a loaded machine the job may take minutes to reach the moment.
        result = self._run_job_with(lambda: condition(self._group), stop, 300, grace=60)
        if not asked:
            raise AssertionError(f"the moment to stop never came:\n{result.stdout[-3000:]}")
        return result, time.monotonic() - asked[0]

    def _run_job_with(
        self,
        condition: Callable[[], bool],
        act: Callable[[int], bool],
        timeout: float,
        *,
        grace: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the job in its own process group; call `act(group)` once, when `condition()`
        first holds (True from `act`: the job is over, stop waiting for it to finish)."""
        process = subprocess.Popen(
            self.command("run", *JOB),
            cwd=REPO_ROOT,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._group = process.pid
        deadline = time.monotonic() + timeout
        acted = False
        try:
            output_reader = _OutputReader(process)
            while process.poll() is None and time.monotonic() < deadline:
                if not acted and condition():
                    acted = True
                    if grace is not None:  # from now on, only `grace` seconds to finish
                        deadline = time.monotonic() + grace
                    if act(process.pid):
                        break
                time.sleep(0.02)
            with contextlib.suppress(subprocess.TimeoutExpired):  # still running: killed below
                process.wait(timeout=max(deadline - time.monotonic(), 1))
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        # What it printed, also when it had to be killed (a hang is then readable).
        return subprocess.CompletedProcess(
            process.args, process.returncode, output_reader.text(), ""
        )

    def stored_state(self) -> dict:
        result = self.run("state", "get", self.state_id, timeout=60)
        assert result.returncode == 0, result.stderr
        return orjson.loads(result.stdout.strip().splitlines()[-1] or "{}")


class _OutputReader:
    """Drains a process's output on a thread, so a chatty job never blocks on a full pipe while
    the test waits on it."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._chunks: list[str] = []
        assert process.stdout is not None
        self._stream = process.stdout
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        for line in self._stream:
            self._chunks.append(line)

    def text(self) -> str:
        self._thread.join(timeout=30)
        return "".join(self._chunks)


def blocked_writing_to_a_pipe(session: int, executable: str) -> bool:
    """Whether a process of `session` running `executable` is blocked in a write to a full
    pipe (Linux: its wait channel is pipe_write or anon_pipe_write), as a tap is when its
    reader is slower."""
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) != session:  # fields after "(comm)": state, ppid, pgrp, session
                continue
            proc = stat_file.parent
            command = (proc / "cmdline").read_bytes().decode(errors="replace")
            if executable in command and (proc / "wchan").read_text().endswith("pipe_write"):
                return True
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
    return False


def install_plugins() -> None:
    """Install (or refresh) the plugin virtualenvs once; `meltano run` alone would not notice
    dependency changes in the plugins' pyproject files."""
    result = subprocess.run(
        meltano_command(None, "install"),
        cwd=REPO_ROOT,
        env=base_environment(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"meltano install failed:\n{result.stdout}\n{result.stderr}")
