"""What a target-posthog run says it did: the closing summary line and the running counts."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from target_posthog.progress import Counts

if TYPE_CHECKING:
    from target_posthog.target import TargetPostHog


def run_summary(target: TargetPostHog) -> str:
    """The run's closing line: what was sent, set aside and retried (never a key)."""
    delivery = target.delivery
    elapsed = max(time.monotonic() - target.started_at, 1e-9)
    client = target.client
    letters = target.dead_letters
    repeats = f", {letters.already_in_file} already there" if letters.already_in_file else ""
    reasons = f": {letters.reasons()}" if letters.count else ""
    set_aside = target.set_aside
    set_aside_text = (
        set_aside.describe() + target.input_lines.describe() + target.mapping_notes.describe()
    )
    if target.dry_run:
        return (
            f"dry run: nothing sent; {delivery.events_sent} events and "
            f"{delivery.aliases_sent} aliases written as payloads to "
            f"{target.config['dry_run_path']}, {letters.count} dead-lettered"
            f" ({letters.file.path}{repeats}){reasons}, {set_aside_text}"
        )
    return (
        f"{delivery.events_sent} events sent ({delivery.events_sent / elapsed:.0f}/s), "
        f"{delivery.aliases_sent} aliases, {target.profiles.person_updates_sent} person and "
        f"{target.profiles.group_updates_sent} group updates, {letters.count} dead-lettered"
        f" ({letters.file.path}{repeats}){reasons}, {set_aside_text}, {target.retries} retries, "
        f"{client.requests_sent if client else 0} requests, "
        f"{target.registry.shared_device_pairs} shared-device conflicts (not aliased), "
        f"{target.registry.colliding_ids} colliding user/device ids (kept apart)"
    )


def run_counts(target: TargetPostHog) -> Counts:
    """What the run has done so far, for the progress and checkpoint lines."""
    delivery = target.delivery
    return Counts(
        received=delivery.received,
        events_sent=delivery.events_sent,
        aliases_sent=delivery.aliases_sent,
        updates_sent=target.profiles.person_updates_sent + target.profiles.group_updates_sent,
        dead_letters=target.dead_letters.count,
    )
