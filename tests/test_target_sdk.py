"""singer-sdk's standard target tests.

(Its TargetMultipleStateMessages test is left out, as singer-sdk's own suite does: it compares
parsed STATE dicts with JSON strings, and expects the STATEs of drains, not of each message.
test_target_delivery.py checks the STATE stream of this target directly.)"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from singer_sdk.testing import SuiteConfig, TargetTestRunner, get_target_test_class
from singer_sdk.testing.target_tests import TargetRecordMissingKeyProperty
from singer_sdk.testing.templates import TargetFileTestTemplate
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


class _RecordMissingKeyPropertyGoesOn(TargetRecordMissingKeyProperty):
    """The SDK's input, but the run must go on (see below)."""

    def test(self) -> None:
        TargetFileTestTemplate.test(self)


class TestTargetPostHogStandard(StandardTargetTests):  # type: ignore[misc, valid-type]
    """Runs singer-sdk's standard target suite against target-posthog."""

    def test_target_record_missing_key_property(
        self, config: SuiteConfig, resource: Any, runner: TargetTestRunner
    ) -> None:
        """Where the suite expects MissingKeyPropertiesError, this target goes on: one odd
        record must not stop a migration (issue 11). A record without `uuid` gets the derived
        one (event_keys.record_uuid); the SDK's sample record is no Amplitude event, so it is
        dead-lettered like the suite's other samples."""
        _RecordMissingKeyPropertyGoesOn().run(config, resource, runner)


def teardown_module() -> None:
    _POSTHOG.__exit__(None, None, None)
    assert _POSTHOG.requests == [], "the SDK's sample records are not events and must not be sent"
