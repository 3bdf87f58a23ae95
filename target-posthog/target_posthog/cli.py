"""target-posthog's console entry points, kept light: each installs singer_plugin_common's stop
handler before singer-sdk (about a second to import), so a stop while starting is one line."""

from __future__ import annotations

from singer_plugin_common.stop_signals import stop_quietly


def target() -> None:
    """`target-posthog`: singer-sdk's command line (see target.py)."""
    stop_quietly("target-posthog")
    from target_posthog.allocator import cap_malloc_arenas

    cap_malloc_arenas()  # before singer-sdk starts any thread
    from target_posthog.target import TargetPostHog

    TargetPostHog.cli()


def verify() -> None:
    """`target-posthog-verify` (see verify_cli.py): it has no handler of its own, so a stop
    while it asks the APIs is said the same way, without "while starting"."""
    stop_quietly("target-posthog-verify")
    from target_posthog.verify_cli import cli

    stop_quietly("target-posthog-verify", starting=False)
    cli()
