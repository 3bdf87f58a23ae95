"""Console entry points, kept light: they install a stop handler before anything heavy is
imported (singer-sdk takes about a second), so that Ctrl-C or SIGTERM while tap-amplitude starts
(Meltano launching it, or running discovery) ends it with one line and exit code
128 + signal number, not a KeyboardInterrupt traceback. Once running, the plugin's own handlers
take over."""

from __future__ import annotations

import os
import signal
from types import FrameType

_NAME = "tap-amplitude"


def _stopped_while_starting(signum: int, frame: FrameType | None) -> None:
    os.write(2, f"{_NAME} stopped on {signal.Signals(signum).name} while starting\n".encode())
    # At once, without the interpreter's clean-up: an import cut short by the signal can leave
    # a C extension half set up, and finalising it was measured to crash (SIGSEGV). Nothing is
    # open or written yet.
    os._exit(128 + signum)


def _stop_quietly_while_starting() -> None:
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, _stopped_while_starting)


def tap() -> None:
    """`tap-amplitude`: singer-sdk's command line (see tap.py)."""
    _stop_quietly_while_starting()
    from tap_amplitude.tap import TapAmplitude

    TapAmplitude.cli()
