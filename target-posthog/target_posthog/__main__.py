"""`python -m target_posthog`."""

from target_posthog.cli import target

target()
