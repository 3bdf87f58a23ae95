"""target-posthog's settings for the verification (`target-posthog-verify`, verify_cli.py).

They sit in target-posthog's settings table (meltano.yml, `TARGET_POSTHOG_*`) so the
verification runs with the same keys and registry as the migration; the target itself reads
only personal_api_key, project_id and app_host, with `existing_properties: keep`
(person_reader.py).
"""

from __future__ import annotations

from singer_sdk import typing as th

VERIFY_SETTINGS: tuple[th.Property, ...] = (
    th.Property(
        "personal_api_key",
        th.StringType,
        secret=True,
        title="PostHog personal API key",
        description="For the verification (and existing_properties keep): a personal API "
        "key (phx_...) with the Query Read permission. Never logged or written.",
    ),
    th.Property(
        "project_id",
        th.StringType,
        title="PostHog project id",
        description="For the verification (and existing_properties keep): the project's id "
        "(Project settings).",
    ),
    th.Property(
        "app_host",
        th.StringType,
        title="PostHog app host",
        description="For the verification: where PostHog's query API is. Default: from "
        "host (us.i.posthog.com -> us.posthog.com; a self-hosted host is its own).",
    ),
    th.Property(
        "amplitude_api_key",
        th.StringType,
        secret=True,
        title="Amplitude API key",
        description="For the verification (Dashboard REST API); in Meltano, tap-amplitude's.",
    ),
    th.Property(
        "amplitude_secret_key",
        th.StringType,
        secret=True,
        title="Amplitude secret key",
        description="For the verification; in Meltano, tap-amplitude's.",
    ),
    th.Property(
        "amplitude_data_region",
        # Checked by the verification only, in any case like tap-amplitude's data_region: a
        # value the verification cannot use must never stop the migration itself.
        th.StringType,
        default="us",
        title="Amplitude data region",
        description="For the verification: us (amplitude.com) or eu (analytics.eu.amplitude.com).",
    ),
    th.Property(
        "amplitude_api_url",
        th.StringType,
        title="Amplitude API URL",
        description="For the verification: overrides the region's base URL (tests, proxies).",
    ),
    th.Property(
        "amplitude_start_date",
        th.StringType,
        title="Amplitude start date",
        description="For the verification: where the migration starts (ISO 8601, by upload "
        "time; in Meltano, tap-amplitude's start_date). Unset: the first hour it read.",
    ),
    th.Property(
        "amplitude_end_date",
        th.StringType,
        title="Amplitude end date",
        description="For the verification: where the report ends (ISO 8601; in Meltano, "
        "tap-amplitude's end_date). Unset: through now.",
    ),
    th.Property(
        "amplitude_time_zone",
        th.StringType,
        default="UTC",
        title="Amplitude project time zone",
        description="For the verification: the time zone of Amplitude's charts (project "
        "settings), e.g. America/Los_Angeles; its buckets are moved to UTC.",
    ),
)
