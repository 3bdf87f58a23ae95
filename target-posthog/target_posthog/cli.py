"""Console entry points, kept light: they install a stop handler before anything heavy is
imported (singer-sdk takes about a second), so that Ctrl-C or SIGTERM while target-posthog starts
(Meltano launching it, or running discovery) ends it with one line and exit code
128 + signal number, not a KeyboardInterrupt traceback. Once running, the plugin's own handlers
take over."""

from __future__ import annotations

import os
import signal
from types import FrameType

_NAME = "target-posthog"


def _stopped_while_starting(signum: int, frame: FrameType | None) -> None:
    os.write(2, f"{_NAME} stopped on {signal.Signals(signum).name} while starting\n".encode())
    raise SystemExit(128 + signum)


def _stop_quietly_while_starting() -> None:
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, _stopped_while_starting)


def target() -> None:
    """`target-posthog`: singer-sdk's command line (see target.py)."""
    _stop_quietly_while_starting()
    from target_posthog.target import TargetPostHog

    TargetPostHog.cli()


def verify() -> None:
    """`target-posthog-verify` (see verify_cli.py)."""
    _stop_quietly_while_starting()
    from target_posthog.verify_cli import cli

    cli()
