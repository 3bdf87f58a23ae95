"""A stop request while a plugin is still starting (Ctrl-C as Meltano launches it or runs
discovery; singer-sdk alone takes about a second to import) ends it with one line and exit code
128 + signal number, never a KeyboardInterrupt traceback."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
# Seconds after the plugin installed its start-up handler; the early ones land inside the
# imports, the late ones may land after the plugin finished (exit 0) or in its own handlers,
# which must be just as quiet. What comes before the handler (the interpreter's own start-up:
# site, .pth files, the signal module; a few tens of ms, far more on a loaded machine) is out of
# any package's reach, so the clock starts once the process catches SIGTERM (which Python
# itself leaves alone), read from /proc, not at launch.
DELAYS = (0.0, 0.05, 0.1, 0.2, 0.3)
SIGTERM_BIT = 1 << (signal.SIGTERM - 1)


def wait_for_handler(process: subprocess.Popen) -> None:
    """Until `process` catches SIGTERM (its SigCgt mask in /proc), or it ended; at most 30 s."""
    status = Path(f"/proc/{process.pid}/status")
    deadline = time.monotonic() + 30
    while process.poll() is None and time.monotonic() < deadline:
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines())
        except OSError:  # gone meanwhile
            return
        if int(fields["SigCgt"], 16) & SIGTERM_BIT:
            return
        time.sleep(0.001)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize(
    ("command", "name"),
    [
        (["tap-amplitude", "--about"], "tap-amplitude"),
        (["target-posthog", "--about"], "target-posthog"),
        (["target-posthog-verify"], "target-posthog-verify"),
    ],
)
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_request_while_a_plugin_starts_ends_it_in_one_line(
    command: list[str], name: str, stop_signal: signal.Signals
) -> None:
    stopped_while_starting = 0
    for delay in DELAYS:
        process = subprocess.Popen(
            [str(BIN / command[0]), *command[1:]],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # As from a terminal: SIGINT not ignored (a background job's would be).
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        wait_for_handler(process)
        time.sleep(delay)
        process.send_signal(stop_signal)
        _, err = process.communicate(timeout=60)
        stderr = err.decode()
        assert "Traceback" not in stderr, (delay, stderr[-2000:])
        assert "KeyboardInterrupt" not in stderr, (delay, stderr[-2000:])
        line = f"{name} stopped on {stop_signal.name} while starting"
        if line in stderr:
            stopped_while_starting += 1
            assert process.returncode == 128 + stop_signal, (delay, stderr[-2000:])
            assert stderr.strip().splitlines()[-1] == line
    # Imports take far longer than the first delay: at least that stop landed in them.
    assert stopped_while_starting >= 1
