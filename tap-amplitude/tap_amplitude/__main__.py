"""Run the tap: ``python -m tap_amplitude``."""

from tap_amplitude.cli import tap

tap()
