"""How a run that cannot go on ends: settle what is in flight, close, say why and where the
next run resumes, and the exit code (1 on failure, 128 + signal number on a stop request)."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass

from target_posthog.client import DeliveryError
from target_posthog.deadletter import LocalFileError
from target_posthog.delivery import Delivery
from target_posthog.registry import RegistryError
from target_posthog.state_output import StateOutput

# What stops a run with one clear line (no traceback): PostHog, the registry, or a local file.
STOPPING_ERRORS = (DeliveryError, RegistryError, LocalFileError)
STOP_GRACE_SECONDS = 3.0  # how long a stop request waits for requests in flight


@dataclass
class Ending:
    """The end of a run that stops early; `close` closes the target's files and registry."""

    delivery: Delivery
    state_output: StateOutput
    logger: logging.Logger
    close: Callable[[], None]
    summary: Callable[[], str]
    request_timeout: float  # seconds

    def stop_now(self, signum: int | None, cause: str = "") -> int:
        """Settle what is in flight, close, say why and where the next run resumes; the exit
        code (128 + `signum` for a stop request, else 1 with `cause`)."""
        # A stop request must end within seconds: requests still unanswered after a short
        # grace are sent again next run (same uuids). A failure lets them finish.
        timeout = self.request_timeout + 1.0
        self.delivery.abandon(timeout if signum is None else min(timeout, STOP_GRACE_SECONDS))
        self.close()
        self.last_words(signum, cause)
        return 1 if signum is None else 128 + signum

    def settle_then_fail(self, cause: str) -> int:
        """Input cannot go on: deliver what was received, emit its STATE, exit code 1."""
        try:
            self.delivery.finish()
        except STOPPING_ERRORS as exc:
            return self.stop_now(None, f"target-posthog failed: {exc}")
        self.close()
        self.last_words(None, cause)
        return 1

    def last_words(self, signum: int | None, cause: str) -> None:
        """The run's closing lines, the cause last: it is what a user reads first."""
        self.logger.info("stopped: %s", self.summary())
        if signum is not None:
            self.logger.warning(
                "target-posthog stopped on %s; %s",
                signal.Signals(signum).name,
                self.state_output.resume_point(),
            )
        else:
            self.logger.error("%s; %s", cause, self.state_output.resume_point())
