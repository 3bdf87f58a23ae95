"""singer-sdk's standard target tests.

(Its TargetMultipleStateMessages test is left out, as singer-sdk's own suite does: it compares
parsed STATE dicts with JSON strings, and expects the STATEs of drains, not of each message.
test_target_delivery.py checks the STATE stream of this target directly.)"""

from __future__ import annotations

import tempfile
from pathlib import Path

from singer_sdk.testing import SuiteConfig, get_target_test_class
from target_posthog.target import TargetPostHog

from tests.target_support import POSTHOG_KEY
from tests.testbed.posthog import PostHogStandIn

# The SDK's sample streams are not Amplitude events: the target dead-letters every record
# (no event_type), sends nothing, and must still pass the standard behaviour checks.
_WORKDIR = Path(tempfile.mkdtemp(prefix="target-posthog-sdk-"))
_POSTHOG = PostHogStandIn(api_key=POSTHOG_KEY)
_POSTHOG.__enter__()

SDK_CONFIG = {
    "api_key": POSTHOG_KEY,
    "host": _POSTHOG.url,
    "alias_registry": str(_WORKDIR / "aliases.sqlite"),
    "dead_letter_path": str(_WORKDIR / "dead-letter.jsonl"),
    "retry_base_seconds": 0.01,
    "max_retries": 1,
}

StandardTargetTests = get_target_test_class(
    TargetPostHog,
    config=SDK_CONFIG,
    suite_config=SuiteConfig(),
)


class TestTargetPostHogStandard(StandardTargetTests):  # type: ignore[misc, valid-type]
    """Runs singer-sdk's standard target suite against target-posthog."""


def teardown_module() -> None:
    _POSTHOG.__exit__(None, None, None)
    assert _POSTHOG.requests == [], "the SDK's sample records are not events and must not be sent"
