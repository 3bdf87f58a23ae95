"""Ids PostHog's capture would change: kept apart by a stable hashed form.

PostHog's capture cuts a `distinct_id` to its first 200 characters and replaces each NUL with
U+FFFD (PostHog/posthog rust/capture v0_request.rs, test
`extract_distinct_id_trims_to_200_chars`). Two Amplitude users whose ids differ only after the
200th character, or only in a NUL, would become one PostHog person. Such an id is sent as
`<its first 100 characters, NUL as U+FFFD>#repaired-<SHA-256 of the id's UTF-8, 64 hex>`
(174 characters at most): the same on every run, one per original id; the original stays in
`$amplitude_user_id` / `$amplitude_device_id`. The limit is 183 characters, not 200: a
colliding id gets `amplitude_device:` or `amplitude_user:` in front (user_ids.py), and that
id too must keep every character.

The target makes up ids of its own: `amplitude_user:<id>` and `amplitude_device:<id>` for
colliding ids (user_ids.py) and `amplitude_group_updates` for group updates nobody showed
(profile_updates.py). A real id of that form (a user_id "amplitude_user:c91", say) would share
the made-up id's PostHog person for good, so it is sent in the same hashed form
(`amplitude_user:c91#repaired-<sha256>`, counted in the run's summary); a made-up id never
holds `#repaired-` after its prefix unless the real id it is made from does.
"""

from __future__ import annotations

import hashlib

from target_posthog.profile_updates import GROUP_UPDATES_DISTINCT_ID
from target_posthog.user_ids import COLLIDING_DEVICE_PREFIX, COLLIDING_USER_PREFIX

MAX_DISTINCT_ID = 200  # characters PostHog's capture keeps
MAX_ID = MAX_DISTINCT_ID - max(len(COLLIDING_DEVICE_PREFIX), len(COLLIDING_USER_PREFIX))
_KEPT = 100
MARK = "#repaired-"  # as tap-amplitude marks the ids its repairs would otherwise merge


def needs_hashing(identifier: str) -> bool:
    """True for an id PostHog's capture would cut or change (with a colliding id's prefix)."""
    return len(identifier) > MAX_ID or "\0" in identifier


def is_reserved(identifier: str) -> bool:
    """True for a real id of the form of an id the target makes up (above)."""
    return (
        identifier.startswith((COLLIDING_USER_PREFIX, COLLIDING_DEVICE_PREFIX))
        or identifier == GROUP_UPDATES_DISTINCT_ID
    )


def hashed_id(identifier: str) -> str:
    """The form above (call only where `needs_hashing` or `is_reserved`)."""
    digest = hashlib.sha256(identifier.encode("utf-8", "surrogatepass")).hexdigest()
    return identifier[:_KEPT].replace("\0", "\ufffd") + MARK + digest
