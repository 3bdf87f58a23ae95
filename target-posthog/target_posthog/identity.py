"""Who an event belongs to: usable ids, and the one alias that ties a device to its user.

PostHog merges persons through `$create_alias`; a merge is permanent, so ids PostHog refuses
to merge through are never used to form one (shared/reference/posthog-capture-api.md, section 3).
"""

from __future__ import annotations

import math
from typing import Any

from target_posthog.event_keys import derived_uuid

ALIAS = "$create_alias"
_EXACT_FLOAT_INTS = 2**53

# Ids that name nobody. A record's user_id or device_id equal to one of them is treated as
# absent (the raw value stays in `$amplitude_user_id` / `$amplitude_device_id`):
# - PostHog refuses to merge persons through these (PersonMergeService's illegal lists,
#   shared/reference/posthog-capture-api.md section 3), compared as PostHog compares them:
#   surrounding whitespace and quotes stripped, the first list case-insensitively.
POSTHOG_ILLEGAL_CASE_INSENSITIVE = (
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
POSTHOG_ILLEGAL_CASE_SENSITIVE = (
    "[object Object]",
    "NaN",
    "None",
    "none",
    "null",
    "0",
    "undefined",
)
# - Values Amplitude itself treats as invalid user/device ids (what SDKs send when the app has
#   no id: a language's null spelled out, a zero, an all-zero advertising id). Compared like
#   PostHog's first list (case-insensitively), so "NULL" and "Unknown" count too.
_AMPLITUDE_INVALID = (
    "null",
    "undefined",
    "none",
    "nil",
    "<nil>",
    "anonymous",
    "unknown",
    "n/a",
    "0",
    "-1",
    "nan",
    "[object object]",
    "{}",
    "[]",
    "00000000-0000-0000-0000-000000000000",
)
PLACEHOLDER_IDS: tuple[str, ...] = (
    *POSTHOG_ILLEGAL_CASE_INSENSITIVE,
    *POSTHOG_ILLEGAL_CASE_SENSITIVE,
    *_AMPLITUDE_INVALID,
)
_CASE_INSENSITIVE = frozenset(POSTHOG_ILLEGAL_CASE_INSENSITIVE + _AMPLITUDE_INVALID)
_CASE_SENSITIVE = frozenset(POSTHOG_ILLEGAL_CASE_SENSITIVE)
_LONGEST_PLACEHOLDER = max(map(len, PLACEHOLDER_IDS)) + 2  # + a pair of quotes
_ZERO_UUID = "00000000-0000-0000-0000-000000000000"


def clean_id(value: object) -> str | None:
    """An identity as PostHog wants it: a non-blank string that is not a placeholder, or None.

    An id given as a number has one string form whatever its JSON spelling: ``4242424242``
    and ``4242424242.0`` are both ``"4242424242"`` (integers of any width exactly; a float
    only when it is a whole number a float holds exactly, below 2**53). So a numeric user_id
    0 is the placeholder "0".
    """
    if isinstance(value, str):
        return None if is_placeholder(value) else value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, float) and math.isfinite(value):
        exact = value.is_integer() and abs(value) < _EXACT_FLOAT_INTS
        text = str(int(value)) if exact else repr(value)
    else:
        return None
    return None if is_placeholder(text) else text


def is_placeholder(identifier: str) -> bool:
    """True for blank ids and `PLACEHOLDER_IDS` (quotes and surrounding whitespace ignored)."""
    length = len(identifier)
    if length > _LONGEST_PLACEHOLDER:  # almost every real id: no string work
        return False
    if length == 36 and identifier[8] == "-":  # a UUID: only the all-zero one names nobody
        return identifier == _ZERO_UUID
    stripped = identifier.strip().strip("\"'").strip()
    return not stripped or stripped in _CASE_SENSITIVE or stripped.lower() in _CASE_INSENSITIVE


def can_alias(device_id: str, user_id: str) -> bool:
    """False for pairs PostHog would refuse to merge (same id twice, or a placeholder id)."""
    return device_id != user_id and not (is_placeholder(device_id) or is_placeholder(user_id))


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
