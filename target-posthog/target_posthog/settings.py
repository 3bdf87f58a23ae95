"""target-posthog's settings: their JSON schema (what Meltano, `--about` and the Hub
definition show) and the start-up checks a schema cannot express."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from singer_sdk import typing as th

from target_posthog.verify_settings import VERIFY_SETTINGS

_LOCAL_HOSTS = frozenset(("127.0.0.1", "localhost", "::1"))

CONFIG_SCHEMA: dict = th.PropertiesList(
    th.Property(
        "api_key",
        th.StringType(nullable=False),
        required=True,
        secret=True,
        title="PostHog project API key",
        description="The project API key (phc_...). Never logged or written.",
    ),
    th.Property(
        "host",
        th.StringType,
        default="https://us.i.posthog.com",
        title="Host",
        description="https://us.i.posthog.com, https://eu.i.posthog.com or a "
        "self-hosted URL. https is required except for localhost.",
    ),
    th.Property(
        "historical_migration",
        th.BooleanType,
        default=True,
        title="Historical migration",
        description="Send as a historical migration (PostHog's import pipeline).",
    ),
    th.Property(
        "batch_size",
        th.IntegerType(minimum=1, maximum=50_000),
        default=1000,
        title="Events per request",
        description="Most events per request; requests are also kept under 5 MiB.",
    ),
    th.Property(
        "concurrency",
        th.IntegerType(minimum=1, maximum=64),
        default=4,
        title="Requests in flight",
        description="Batches sent at the same time (raise it for a slow link).",
    ),
    th.Property(
        "max_events_per_minute",
        th.IntegerType(minimum=1),
        title="Max events/min",
        description="The speed agreed with PostHog support for the whole migration; "
        "runs sharing one alias registry share it. Unset, no limit.",
    ),
    th.Property(
        "max_retries",
        th.IntegerType(minimum=0),
        default=10,
        title="Max retries",
        description="Retries of one request (429, 5xx, timeouts, dropped "
        "connections) before the run fails.",
    ),
    th.Property(
        "retry_base_seconds",
        th.NumberType(minimum=0),
        default=1.0,
        title="First retry wait (s)",
        description="Backoff doubles from this (with jitter, up to 60 s); "
        "Retry-After is always honoured.",
    ),
    th.Property(
        "request_timeout",
        th.NumberType(exclusive_minimum=0),
        default=30,
        title="Request timeout (s)",
        description="Seconds to wait for PostHog to answer one request; then it is "
        "retried (with the same uuids).",
    ),
    th.Property(
        "alias_registry",
        th.StringType,
        default="target-posthog-aliases.sqlite",
        title="Alias registry",
        description="Where every (device, user) alias PostHog confirmed and every "
        "shared device are kept: a SQLite file (relative to the working folder) or a "
        "PostgreSQL URL (postgresql://user:password@host:5432/db; the password may "
        "instead come from PGPASSWORD), which parallel jobs can share.",
    ),
    th.Property(
        "existing_properties",
        th.StringType(allowed_values=["overwrite", "keep"]),
        default="overwrite",
        title="Existing person and group properties",
        description="overwrite: each person and group ends with its newest Amplitude "
        "values (a new PostHog project, or Amplitude is the source of truth). keep: the "
        "project already receives live data; a value a person or group held before the "
        "migration is never changed, the migration's own are newest across runs (needs "
        "personal_api_key and project_id to read, once per person and group, what PostHog "
        "holds; without them history only fills missing person properties, $set_once, and "
        "sends no group properties: PostHog has no set-once for groups).",
    ),
    th.Property(
        "dead_letter_path",
        th.StringType,
        default="target-posthog-dead-letter.jsonl",
        title="Dead-letter file",
        description="JSONL of records not sent, each with the reason.",
    ),
    th.Property(
        "dry_run_path",
        th.StringType,
        title="Dry-run file",
        description="Write the exact request payloads (without api_key) to this "
        "JSONL file, replacing an earlier dry run's, and send nothing. No STATE is "
        "emitted: no bookmark moves.",
    ),
    *VERIFY_SETTINGS,  # read only by target-posthog-verify (verify_settings.py)
).to_dict()


def config_problems(config: dict[str, Any], known: set[str]) -> list[str]:
    """Start-up checks a JSON schema cannot express; each a line the user can act on."""
    problems = [
        f"unknown setting {key!r} (known: {', '.join(sorted(known))})"
        for key in sorted(set(config) - known)
    ]
    api_key = config.get("api_key")
    if isinstance(api_key, str) and not api_key.strip():
        problems.append("api_key is empty: set the PostHog project API key (phc_...)")
    host = config.get("host", "https://us.i.posthog.com")
    if isinstance(host, str):
        parts = urlsplit(host)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(f"host {host!r} is not a URL like https://us.i.posthog.com")
        elif parts.scheme != "https" and parts.hostname not in _LOCAL_HOSTS:
            problems.append(f"host {host!r} must use https (plain http only for localhost)")
    return problems
