"""Text no writer or target can hold, repaired to U+FFFD: one rule for every string the tap keeps.

- A lone UTF-16 surrogate (``"\\ud800"``: an emoji cut in two; Python's ``json`` reads it)
  cannot be written as UTF-8: orjson, which writes every Singer message, refuses the whole
  record ("str is not valid UTF-8: surrogates not allowed").
- NUL (``"\\u0000"``, or a raw zero byte inside a string) is valid JSON, but PostgreSQL's text
  and jsonb cannot hold it ("invalid byte sequence for encoding UTF8: 0x00", "unsupported
  Unicode escape sequence": PostgreSQL documentation, "Character Types" and "JSON Types"), so
  MeltanoLabs' target-postgres fails on such a record for good and loads nothing.

Each becomes U+FFFD, in values and keys alike, wherever the tap keeps text: the record's fields
and the values it keeps aside (``additional_properties``: duplicate_keys, as_exported,
reserved_names, number_texts). The caller names each repair in the record's ``repairs`` field
(:func:`repairs_for`).
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"
REPAIR_SURROGATE = "lone UTF-16 surrogate escape replaced by U+FFFD"
REPAIR_NUL = "NUL replaced by U+FFFD (PostgreSQL text cannot hold it)"
_UNHOLDABLE = re.compile("[\x00\ud800-\udfff]")


def repairs_for(value: Any) -> list[str]:
    """The repairs :func:`cleaned` makes in ``value`` (strings, keys, lists and dicts), in the
    order of the texts above; [] for nearly every value."""
    found: set[str] = set()
    _find(value, found)
    has_nul = "\x00" in found
    return [REPAIR_SURROGATE] * (len(found) > has_nul) + [REPAIR_NUL] * has_nul


def _find(value: Any, found: set[str]) -> None:
    if type(value) is str:
        found.update(_UNHOLDABLE.findall(value))
    elif type(value) is dict:
        for key, item in value.items():
            _find(key, found)
            _find(item, found)
    elif type(value) is list:
        for item in value:
            _find(item, found)


def clean(text: str) -> str:
    """``text`` with each lone surrogate and NUL as U+FFFD (pairs were joined by the reader)."""
    if _UNHOLDABLE.search(text) is None:
        return text
    return _UNHOLDABLE.sub(REPLACEMENT, text)


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
