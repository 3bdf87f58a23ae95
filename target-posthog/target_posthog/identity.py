"""Who an event belongs to: usable ids, and the one alias that ties a device to its user.

PostHog merges persons through `$create_alias`; a merge is permanent, so ids PostHog refuses
to merge through are never used to form one (shared/reference/posthog-capture-api.md, section 3).
"""

from __future__ import annotations

import math
from decimal import Decimal
from functools import lru_cache
from typing import Any

from target_posthog.event_keys import derived_uuid

ALIAS = "$create_alias"

# Ids that name nobody: the one list of placeholder ids (README "Identity: placeholder ids").
# A record's user_id or device_id that is one of them is treated as absent everywhere (the raw
# value stays in `$amplitude_user_id` / `$amplitude_device_id`).
# - PostHog refuses to merge persons through these (PersonMergeService's illegal lists,
#   shared/reference/posthog-capture-api.md section 3: the first list case-insensitively, the
#   second exactly, quoted variants too). The PostHog stand-in reads them from here.
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
# - What SDKs and pipelines send when they have no id, which Amplitude itself treats as invalid
#   (its docs: a user_id "None" sent for many users makes them one user): a language's null
#   spelled out, "unknown", "n/a", a spreadsheet's "#N/A".
_NO_ID_WORDS = (
    "null",
    "undefined",
    "none",
    "nil",
    "nan",
    "na",
    "n/a",
    "#n/a",
    "anonymous",
    "unknown",
    "-",
    "?",
)
# Besides these words, and compared more loosely than PostHog does (a superset of its lists,
# so PostHog never refuses an alias the target sends):
# - any case, after surrounding whitespace and quotes (" ' `, nested) are stripped;
# - a word in brackets: "(null)" (C's printf), "<nil>" (Go), "[undefined]", "{}", "()";
# - JavaScript's text of an object: "[object Object]", "[object Undefined]", any "[object X]";
# - a number that is 0 or -1 or not finite, in any spelling: "0", "00", "0.0", "-0", "+0",
#   "0e0", "-1", "-1.0", "NaN", "Infinity";
# - zeros with dashes or braces: the all-zero UUID (an unset advertising id), with or without
#   dashes, in braces ("00000000000000000000000000000000", "{00000000-0000-...}").
# Blank ids ("", "  ") are absent too. An id longer than 48 characters is never a placeholder.
PLACEHOLDER_IDS: tuple[str, ...] = (
    *POSTHOG_ILLEGAL_CASE_INSENSITIVE,
    *POSTHOG_ILLEGAL_CASE_SENSITIVE,
    *_NO_ID_WORDS,
    "[object *]",
    "0, 00, 0.0, -0, 0e0, -1, -1.0, Infinity (any number equal to 0 or -1, or not finite)",
    "00000000-0000-0000-0000-000000000000 (any run of zeros, dashes and braces)",
)
_WORDS = frozenset(
    word.lower()
    for word in (*POSTHOG_ILLEGAL_CASE_INSENSITIVE, *POSTHOG_ILLEGAL_CASE_SENSITIVE, *_NO_ID_WORDS)
)
_LONGEST_PLACEHOLDER = 48
_QUOTES = "\"'`"
_BRACKETS = frozenset(("()", "<>", "[]", "{}"))
_ZERO_UUID = "00000000-0000-0000-0000-000000000000"
_NUMBER_START = frozenset("+-.0123456789iInN")


def clean_id(value: object) -> str | None:
    """An identity as PostHog wants it: a non-blank string that is not a placeholder, or None.

    An id given as a number has one string form whatever its JSON spelling: ``4242424242``,
    ``4242424242.0`` and ``4.242424242e9`` are all ``"4242424242"``, ``1e20`` is
    ``"100000000000000000000"`` (the exact value of the number as received: exact_numbers keeps
    its text); a number that is not whole keeps its text (``12.50``). So a numeric user_id 0
    is the placeholder "0", and user_id 42 and device_id "42" are the same PostHog id.
    """
    if isinstance(value, str):
        return None if is_placeholder(value) else value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, float) and math.isfinite(value):
        text = repr(value)  # the number's text as received (exact_numbers)
        exact = Decimal(text)
        if exact == exact.to_integral_value():
            text = str(int(exact))
    else:
        return None
    return None if is_placeholder(text) else text


def is_placeholder(identifier: str) -> bool:
    """True for blank ids and placeholders (`PLACEHOLDER_IDS` and the rules above it)."""
    length = len(identifier)
    if length > _LONGEST_PLACEHOLDER and not _padded(identifier):
        return False  # almost every real id: no string work (a padded one may be a placeholder)
    if length == 36 and identifier[8] == "-":  # a UUID: only the all-zero one names nobody
        return identifier == _ZERO_UUID
    return _is_placeholder_text(identifier)


def _padded(identifier: str) -> bool:
    """Whitespace or quotes at either end (a fixed-width CHAR(n) column pads with spaces)."""
    ends = identifier[0] + identifier[-1]
    return any(end.isspace() or end in _QUOTES for end in ends)


@lru_cache(maxsize=16_384)  # ids repeat (a user's every event): most answers are cached
def _is_placeholder_text(identifier: str) -> bool:
    text = identifier.strip()
    while len(text) >= 2 and text[0] == text[-1] and text[0] in _QUOTES:
        text = text[1:-1].strip()
    if not text:
        return True
    text = text.lower()
    if text in _WORDS:
        return True
    if text[0] + text[-1] in _BRACKETS:
        inner = text[1:-1].strip()
        if not inner or inner in _WORDS or text.startswith("[object "):
            return True
    if text[0] in _NUMBER_START:
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            return number in (0.0, -1.0) or not math.isfinite(number)
    return not text.strip("{}").replace("-", "").strip("0") and "0" in text


def can_alias(device_id: str, user_id: str) -> bool:
    """False for pairs PostHog would refuse to merge (same id twice, or a placeholder id)."""
    return device_id != user_id and not (is_placeholder(device_id) or is_placeholder(user_id))


def readdress(events: list[dict[str, Any]], own_id: str, distinct_id: str) -> None:
    """Send a user's (or an anonymous device's) events under `distinct_id` instead of its own
    id (a colliding id: registry.AliasRegistry.user_distinct_id / device_distinct_id);
    `$amplitude_user_id` / `$amplitude_device_id` keep the id."""
    for event in events:
        if event["distinct_id"] == own_id:
            event["distinct_id"] = distinct_id


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
