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
"""

from __future__ import annotations

import hashlib

from target_posthog.user_ids import COLLIDING_DEVICE_PREFIX, COLLIDING_USER_PREFIX

MAX_DISTINCT_ID = 200  # characters PostHog's capture keeps
MAX_ID = MAX_DISTINCT_ID - max(len(COLLIDING_DEVICE_PREFIX), len(COLLIDING_USER_PREFIX))
_KEPT = 100
MARK = "#repaired-"  # as tap-amplitude marks the ids its repairs would otherwise merge


def needs_hashing(identifier: str) -> bool:
    """True for an id PostHog's capture would cut or change (with a colliding id's prefix)."""
    return len(identifier) > MAX_ID or "\0" in identifier


def hashed_id(identifier: str) -> str:
    """The form above (call only where `needs_hashing`)."""
    digest = hashlib.sha256(identifier.encode("utf-8", "surrogatepass")).hexdigest()
    return identifier[:_KEPT].replace("\0", "\ufffd") + MARK + digest
