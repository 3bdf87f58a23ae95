"""Run the tap: ``python -m tap_amplitude``."""

from tap_amplitude.tap import TapAmplitude

TapAmplitude.cli()
