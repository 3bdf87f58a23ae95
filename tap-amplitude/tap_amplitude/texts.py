"""Text no writer or target can hold, repaired to U+FFFD: one rule for every string the tap keeps.

A lone UTF-16 surrogate (``"\\ud800"``: an emoji cut in two; Python's ``json`` reads it)
cannot be written as UTF-8: orjson, which writes every Singer message, refuses the whole record
("str is not valid UTF-8: surrogates not allowed"). Every such code point becomes U+FFFD, in
values and keys alike, wherever the tap keeps text: the record's fields, and the values it keeps
aside (``additional_properties``: duplicate_keys, as_exported, reserved_names, number_texts).
The caller notes the repair in the record's ``repairs`` field.
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"
REPAIR_SURROGATE = "lone UTF-16 surrogate escape replaced by U+FFFD"
_SURROGATE = re.compile("[\ud800-\udfff]")


def has_surrogate(value: Any) -> bool:
    """Whether a string, or any string (key or value) inside lists and dicts, holds one."""
    if type(value) is str:
        return _SURROGATE.search(value) is not None
    if type(value) is dict:
        return any(has_surrogate(k) or has_surrogate(v) for k, v in value.items())
    if type(value) is list:
        return any(has_surrogate(item) for item in value)
    return False


def clean(text: str) -> str:
    """``text`` with each lone surrogate as U+FFFD (pairs were joined by the JSON reader)."""
    if _SURROGATE.search(text) is None:
        return text
    return _SURROGATE.sub(REPLACEMENT, text)


def cleaned(value: Any) -> Any:
    """``value`` with :func:`clean` applied to every string in it, keys too (a new container
    where something changed). Two keys a repair makes equal keep the later value, as a JSON
    reader keeps a repeated key's: callers find the earlier one with exactjson.duplicate_keys,
    which compares keys repaired the same way."""
    if type(value) is str:
        return clean(value)
    if type(value) is dict:
        return {clean(k): cleaned(v) for k, v in value.items()}
    if type(value) is list:
        return [cleaned(item) for item in value]
    return value
