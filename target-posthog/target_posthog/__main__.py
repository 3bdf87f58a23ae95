"""`python -m target_posthog`."""

from target_posthog.target import TargetPostHog

TargetPostHog.cli()
