"""tap-amplitude's console entry point, kept light: a Ctrl-C or SIGTERM before singer-sdk is
imported (about a second) ends the tap with one line, not a traceback (stop_signals)."""

from __future__ import annotations

from singer_plugin_common.stop_signals import stop_quietly


def tap() -> None:
    """`tap-amplitude`: singer-sdk's command line (see tap.py)."""
    stop_quietly("tap-amplitude")
    from tap_amplitude.tap import TapAmplitude

    TapAmplitude.cli()
