"""Integers of any width, read and written exactly (orjson alone would change them).

orjson reads an integer wider than 64 bits as a float (``123456789012345678901234567890`` ->
``1.2345678901234568e+29``) and refuses to write one (``Integer exceeds 64-bit range``, whatever
``default`` says). Amplitude exports can hold such integers, and tap-amplitude sends them on
exactly. So:

- `loads`: a line holding a run of 20 digits, or "-" and 19 (the only ways to spell such an
  integer), is read with the standard library, whose ints are exact; any other with orjson.
- `dumps`: a value orjson refuses is written again with each wide integer as an
  ``orjson.Fragment`` of its digits: the bytes orjson would write, had it the range.

Only the rare line or event that holds one pays for the second path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

_INT64_MIN, _UINT64_MAX = -(1 << 63), (1 << 64) - 1
# Digits and "-" -> "0", everything else -> " ", then a search for 20 zeros: about 1 µs per
# KiB of line (a regular expression takes over 10). A run inside a string (a date, an id made
# of digits) only costs the slow path.
_DIGITS_AS_ZEROS = bytes(
    0x30 if 0x30 <= byte <= 0x39 or byte == 0x2D else 0x20 for byte in range(256)
)
_WIDE_RUN = b"0" * 20


def may_hold_wide_int(line: bytes) -> bool:
    """False for nearly every line: no run of 20 digits or dashes, so orjson reads it exactly."""
    return _WIDE_RUN in line.translate(_DIGITS_AS_ZEROS)


def loads(line: bytes) -> Any:
    """One JSON value, integers exact. Raises ``ValueError`` (orjson's or json's) if not JSON."""
    if not may_hold_wide_int(line):
        return orjson.loads(line)
    return json.loads(line, parse_constant=_no_constant)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def dumps(value: Any, *, default: Callable[[Any], Any] | None = None, option: int = 0) -> bytes:
    """``orjson.dumps``, with wider-than-64-bit integers written exactly."""
    try:
        return orjson.dumps(value, default=default, option=option)
    except orjson.JSONEncodeError:
        exact = _wide_ints_as_fragments(value)
        if exact is value:
            raise
        return orjson.dumps(exact, default=default, option=option)


def _wide_ints_as_fragments(value: Any) -> Any:
    """A copy with wide ints as fragments (the very same object when it holds none)."""
    if type(value) is int:
        return value if _INT64_MIN <= value <= _UINT64_MAX else orjson.Fragment(str(value))
    if type(value) is dict:
        copied = {key: _wide_ints_as_fragments(item) for key, item in value.items()}
        return value if all(copied[key] is value[key] for key in value) else copied
    if type(value) in (list, tuple):
        items = [_wide_ints_as_fragments(item) for item in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value
