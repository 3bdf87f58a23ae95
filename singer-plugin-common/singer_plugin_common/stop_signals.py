"""Ctrl-C or SIGTERM while a plugin starts (Meltano launching it, or running discovery) ends it
with one line and exit code 128 + signal number, not a KeyboardInterrupt traceback.

Imported by the plugins' console entry points before anything heavy (singer-sdk takes about a
second), so it imports only the standard library. Once running, each plugin's own handlers
take over.
"""

from __future__ import annotations

import os
import signal
from types import FrameType


def stop_quietly(name: str, *, starting: bool = True) -> None:
    """SIGINT and SIGTERM end the process with one line on stderr, "<name> stopped on
    <signal>[ while starting]", and exit code 128 + signal number."""

    def stopped(signum: int, frame: FrameType | None) -> None:
        when = " while starting" if starting else ""
        os.write(2, f"{name} stopped on {signal.Signals(signum).name}{when}\n".encode())
        if starting:
            # At once, without the interpreter's clean-up: an import cut short by the signal can
            # leave a C extension half set up, and finalising it was measured to crash
            # (SIGSEGV). Nothing is open or written yet.
            os._exit(128 + signum)
        raise SystemExit(128 + signum)  # files being written are closed on the way out

    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, stopped)
