"""Who an event belongs to: usable ids, and the one alias that ties a device to its user.

PostHog merges persons through `$create_alias`; a merge is permanent, so ids PostHog refuses
to merge through are never used to form one (shared/reference/posthog-capture-api.md, section 3).
"""

from __future__ import annotations

from typing import Any

from target_posthog.event_keys import derived_uuid

ALIAS = "$create_alias"

# PostHog refuses to merge persons through these ids (PersonMergeService's illegal lists).
_ILLEGAL_CASE_INSENSITIVE = frozenset(
    (
        "anonymous",
        "guest",
        "distinctid",
        "distinct_id",
        "id",
        "not_authenticated",
        "email",
        "undefined",
        "true",
        "false",
    )
)
_ILLEGAL_CASE_SENSITIVE = frozenset(
    ("[object Object]", "NaN", "None", "none", "null", "0", "undefined")
)
_LONGEST_ILLEGAL_ID = max(map(len, _ILLEGAL_CASE_INSENSITIVE | _ILLEGAL_CASE_SENSITIVE))


def clean_id(value: object) -> str | None:
    """An identity as PostHog wants it: a non-blank string, or None."""
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def can_alias(device_id: str, user_id: str) -> bool:
    """False for pairs PostHog would refuse to merge (same id twice, or an illegal id)."""
    return device_id != user_id and not (_is_illegal(device_id) or _is_illegal(user_id))


def _is_illegal(identifier: str) -> bool:
    if len(identifier) > _LONGEST_ILLEGAL_ID + 2:  # almost every real id: no string work
        return False
    stripped = identifier.strip().strip("\"'")
    return (
        stripped.lower() in _ILLEGAL_CASE_INSENSITIVE
        or stripped in _ILLEGAL_CASE_SENSITIVE
        or not stripped
    )


def alias_event(device_id: str, user_id: str, timestamp: str) -> dict[str, Any]:
    """The one `$create_alias` that ties a device's anonymous events to its user.

    Merges the device's person into the user's (PostHog merges `alias` into `distinct_id`).
    The uuid depends only on the pair, so a repeat after a crash is the same PostHog event.
    """
    return {
        "event": ALIAS,
        "distinct_id": user_id,
        "timestamp": timestamp,
        "uuid": derived_uuid("alias", device_id, user_id),
        "properties": {
            "distinct_id": user_id,
            "alias": device_id,
            "$amplitude_user_id": user_id,
            "$amplitude_device_id": device_id,
            "$geoip_disable": True,
            "analytics_source": "amplitude",
        },
    }
