"""singer-sdk's standard tap tests, against the Export API stand-in serving a small export."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from singer_sdk.testing import SuiteConfig, get_tap_test_class
from tap_amplitude.tap import TapAmplitude

from tests.conftest import TAP_API_KEY, TAP_DAY, TAP_SECRET, small_store
from tests.testbed.amplitude import AmplitudeStandIn

# The SDK builds the test class from a config at import time, so the stand-in starts here and
# the module fixture below stops it.
_EXPORT_DIR = Path(tempfile.mkdtemp(prefix="tap-amplitude-standard-"))
_STAND_IN = AmplitudeStandIn(
    small_store(_EXPORT_DIR, hours=24, events=300), api_key=TAP_API_KEY, secret_key=TAP_SECRET
).start()

TestTapAmplitude = get_tap_test_class(
    TapAmplitude,
    config={
        "api_key": TAP_API_KEY,
        "secret_key": TAP_SECRET,
        "api_url": _STAND_IN.url,
        "start_date": TAP_DAY.isoformat(),
        "end_date": (TAP_DAY + timedelta(days=1)).isoformat(),
        "retry_base_seconds": 0.01,
    },
    # A clean export has no unreadable lines (tests/test_dirty_*.py feed it some).
    suite_config=SuiteConfig(ignore_no_records_for_streams=["unreadable_lines"]),
)


@pytest.fixture(scope="module", autouse=True)
def _stop_stand_in() -> Iterator[None]:
    yield
    _STAND_IN.stop()
    shutil.rmtree(_EXPORT_DIR, ignore_errors=True)
