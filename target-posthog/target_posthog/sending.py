"""How the target sends: the PostHog client (or a dry run's payload file), the batch size and
the shared speed limit, made from the target's settings."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from target_posthog.client import PostHogClient, RetryPolicy
from target_posthog.deadletter import JsonLinesFile
from target_posthog.delivery import Sender, Throttle
from target_posthog.dry_run import payload_writer
from target_posthog.project import bind_on_first_acceptance
from target_posthog.rate_budget import SharedThrottle
from target_posthog.registry_database import Database


def batch_size(config: Mapping[str, Any]) -> int:
    """Events per request: `batch_size`, or under a speed limit about one second of events
    (`max_events_per_minute` / 60, at least 1), so sending stays smooth."""
    size = int(config["batch_size"])
    per_minute = config.get("max_events_per_minute")
    return min(size, max(1, per_minute // 60)) if per_minute else size


def throttle(
    config: Mapping[str, Any], stopping: threading.Event, database: Database | None
) -> Throttle:
    """PostHog's agreed speed (`max_events_per_minute`), shared through the registry's
    `database` with every run using it; None (a dry run, which writes no registry): this run
    paces itself alone."""
    speed = config.get("max_events_per_minute")
    if database is None:
        return Throttle(speed, stopping)
    return SharedThrottle(speed, stopping, database)


def dry_run_sender(config: Mapping[str, Any]) -> tuple[Sender, JsonLinesFile]:
    """A sender that writes each batch's payload to `dry_run_path` and accepts it."""
    return payload_writer(
        Path(config["dry_run_path"]), historical_migration=config["historical_migration"]
    )


def posthog_sender(
    config: Mapping[str, Any],
    *,
    database: Database,
    stopping: threading.Event,
    on_retry: Callable[[str], None],
    user_agent: str,
    logger: logging.Logger,
) -> tuple[Sender, PostHogClient]:
    """PostHog's batch API from the settings, bound to the registry's project on the first
    batch PostHog accepts (project.bind_on_first_acceptance); the client, to close."""
    client = PostHogClient(
        host=config["host"],
        api_key=config["api_key"],
        historical_migration=config["historical_migration"],
        request_timeout=float(config["request_timeout"]),
        retry=RetryPolicy(config["max_retries"], float(config["retry_base_seconds"])),
        stopping=stopping,
        on_retry=on_retry,
        user_agent=user_agent,
    )
    sender = bind_on_first_acceptance(
        client.send, database, config["host"], config["api_key"], logger.info
    )
    return sender, client
