"""Benchmark only: make tap-amplitude checkpoint per window, as before hourly checkpoints.

With this folder on a process's path (PYTHONPATH, or a `.pth` file in a virtualenv, since Meltano
drops PYTHONPATH for its plugins), Python imports this module at start-up. It changes something
only where `AMP2PH_BENCH_WINDOW_STATES_ONLY` is set and tap-amplitude is installed: each window
is then read as one piece, in archive order, and bookmarked at its end only.
"""

from __future__ import annotations

import os

if os.environ.get("AMP2PH_BENCH_WINDOW_STATES_ONLY"):
    try:
        from tap_amplitude import streams
        from tap_amplitude.checkpoints import HourOfMembers, ReadingPlan
    except ImportError:  # Meltano's own process, the target: nothing to change
        pass
    else:
        streams.plan_window = lambda window, members: ReadingPlan(  # type: ignore[assignment]
            (HourOfMembers(tuple(members), None),)
        )
