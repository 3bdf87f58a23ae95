"""Console entry points, kept light: they install a stop handler before anything heavy is
imported (singer-sdk takes about a second), so that Ctrl-C or SIGTERM while target-posthog starts
(Meltano launching it, or running discovery) ends it with one line and exit code
128 + signal number, not a KeyboardInterrupt traceback. Once running, the plugin's own handlers
take over."""

from __future__ import annotations

import os
import signal
from types import FrameType


def _stop_quietly(name: str, *, starting: bool = True) -> None:
    """SIGINT and SIGTERM end the process with one line, "<name> stopped on <signal>[ while
    starting]", and exit code 128 + signal number."""

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


def target() -> None:
    """`target-posthog`: singer-sdk's command line (see target.py)."""
    _stop_quietly("target-posthog")
    from target_posthog.allocator import cap_malloc_arenas

    cap_malloc_arenas()  # before singer-sdk starts any thread
    from target_posthog.target import TargetPostHog

    TargetPostHog.cli()


def verify() -> None:
    """`target-posthog-verify` (see verify_cli.py): it has no handler of its own, so a stop
    while it asks the APIs is said the same way, without "while starting"."""
    _stop_quietly("target-posthog-verify")
    from target_posthog.verify_cli import cli

    _stop_quietly("target-posthog-verify", starting=False)
    cli()
