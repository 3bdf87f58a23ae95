"""One line of an export member -> one record: fast when clean, tolerant where meaning is clear.

Nearly every line is clean JSON and goes through orjson alone. The rest:

- A byte-order mark at the line's start is dropped (some tools that re-save exports add one).
- Bytes that are not UTF-8 are replaced by U+FFFD (a string cut mid-character by a producer).
- A lone UTF-16 surrogate escape (``"\\ud83d"`` with no low half: an emoji cut in two, which
  Amplitude's own writer lets through and Python's ``json`` reads) becomes U+FFFD.
- An integer wider than 64 bits is kept exactly: orjson would turn it into a float, so a line
  holding a run of 20 or more digits is parsed with the standard library, whose ints are exact.

Each repair is named in the record's ``repairs`` field (a list of the ``REPAIR_*`` texts below),
so the change is visible wherever the record lands. What still is not one JSON object (``null``,
``[]``, half a line, garbage) raises :class:`UnreadableLineError`; the caller sets the line aside
byte for byte (see ``setaside.py``), because reading it again cannot make it whole.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

REPAIRS_FIELD = "repairs"
REPAIR_BOM = "byte-order mark removed"
REPAIR_UTF8 = "invalid UTF-8 bytes replaced by U+FFFD"
REPAIR_SURROGATE = "lone UTF-16 surrogate escape replaced by U+FFFD"

_BOM = b"\xef\xbb\xbf"
# 20 digits, or "-" and 19, can exceed 64 bits (orjson reads -9223372036854775808 ..
# 18446744073709551615 exactly). A run inside a string only sends the line down the exact path,
# which reads it the same way. Found by mapping every digit and "-" to "0" and everything else
# to " ", then searching for 20 zeros: about 1 µs per KiB, where `re` takes over 10.
_DIGITS_AS_ZEROS = bytes(
    0x30 if 0x30 <= byte <= 0x39 or byte == 0x2D else 0x20 for byte in range(256)
)
_WIDE_RUN = b"0" * 20
_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_TYPES = {list: "an array", str: "a string", bool: "true or false"}


class UnreadableLineError(ValueError):
    """The line is not one JSON object; ``reason`` says why, without the line's content."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_line(line: bytes) -> dict[str, Any]:
    """The record a line holds, repaired where the meaning is clear.

    Raises:
        UnreadableLineError: the line is not (even after those repairs) one JSON object.
    """
    if _WIDE_RUN not in line.translate(_DIGITS_AS_ZEROS):
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            return _parse_tolerant(line)
        if type(value) is dict:
            return value
        raise UnreadableLineError(_not_an_object(value))
    return _parse_tolerant(line)


def _parse_tolerant(line: bytes) -> dict[str, Any]:
    """The slow path: standard-library JSON (exact integers), after and with the repairs."""
    repairs: list[str] = []
    if line.startswith(_BOM):
        line = line[len(_BOM) :]
        repairs.append(REPAIR_BOM)
    try:
        text = line.decode()
    except UnicodeDecodeError:
        text = line.decode(errors="replace")
        repairs.append(REPAIR_UTF8)
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as error:
        msg = f"not JSON: {error.msg} (column {error.colno})"
        raise UnreadableLineError(msg) from None
    except (ValueError, RecursionError) as error:
        raise UnreadableLineError(f"not JSON: {error}") from None
    if type(value) is not dict:
        raise UnreadableLineError(_not_an_object(value))
    # Only a \\u escape can put a surrogate in decoded text.
    if "\\u" in text and _has_surrogate(value):
        value = _replace_surrogates(value)
        repairs.append(REPAIR_SURROGATE)
    if repairs:
        value[REPAIRS_FIELD] = repairs
    return value


def _not_an_object(value: object) -> str:
    kind = "null" if value is None else _JSON_TYPES.get(type(value), "a number")
    return f"JSON {kind}, not an object"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:40]} is too large for a float")
    return value


def _has_surrogate(value: Any) -> bool:
    if type(value) is str:
        return _SURROGATE.search(value) is not None
    if type(value) is dict:
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    if type(value) is list:
        return any(_has_surrogate(item) for item in value)
    return False


def _replace_surrogates(value: Any) -> Any:
    """Every lone surrogate in strings (keys too) -> U+FFFD; pairs were joined by json already."""
    if type(value) is str:
        if _SURROGATE.search(value) is None:
            return value
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if type(value) is dict:
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    if type(value) is list:
        return [_replace_surrogates(item) for item in value]
    return value
