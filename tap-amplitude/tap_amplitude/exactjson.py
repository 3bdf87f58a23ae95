"""JSON read and written with every value exactly as the export spells it.

orjson alone changes values silently: it reads an integer wider than 64 bits as a float, a number
beyond a double's range (``1e400``) not at all, and writes every number it read in its own
spelling (``1.10`` -> ``1.1``, ``1E+2`` -> ``100.0``, ``1e19`` -> ``1e+19``,
``12.345678901234567890123`` -> ``12.345678901234567``). So lines are read with msgspec, whose
integers are exact at any width and which hands each non-integer number's text to a hook:

- a number a double holds and orjson writes back in the same text (nearly all: ``47.400309``,
  ``1.5``) is a plain ``float``;
- any other number a double can approach is an :class:`ExactFloat`: a float (so code that reads
  numbers works unchanged) that remembers its text, written back as that text exactly; so is
  a negative zero (``-0.0``, and the integer ``-0`` where :func:`loads_text` reads it), whose
  sign a decimal or integer type loses;
- a number beyond a double's range (``1e400``, ``-1e400``, ``1e-400``, which a double would hold
  as infinity or zero) cannot be a JSON number any reader holds: it becomes the string of its
  exact text, and :data:`REPAIR_BEYOND_DOUBLE` is noted on the record;
- an integer of more digits than :data:`MAX_INT_DIGITS` (4,300, Python's default limit for
  reading an integer from text, ``sys.int_info.default_max_str_digits``) is no number a Python
  reader holds: singer-sdk's targets (``json.loads``), msgspec and target-posthog all refuse the
  whole line. It becomes the string of its exact text too, with :data:`REPAIR_WIDE_INTEGER`.

How deep a line may nest is bounded too (:data:`MAX_DEPTH`, :func:`too_deep`). Writing them
back (:class:`ExactFloat`, ``dumps``) is singer_plugin_common.exact_json, shared with
target-posthog.

Numbers the tap writes are therefore the export's own text (see tap-amplitude's README, "Numbers"),
and target-posthog reads and sends them the same way.

A JSON object with a key twice (``{"a":1,"a":2}``) keeps the last value, as every JSON parser
does; conform.py finds such lines (cheaply, by their shape) and :func:`duplicate_keys` gives
each earlier value, kept in the record's ``additional_properties.duplicate_keys`` under the
key's JSON Pointer (RFC 6901, ``/a``, ``/event_properties/x``), with the repair
:data:`REPAIR_DUPLICATE_KEYS`. Keys are compared as the record holds them, repaired
(texts.py: a lone surrogate becomes U+FFFD), so two keys a repair makes one are a repeated key
too; repeated_keys.py repairs the kept values the same way. :func:`settle` moves aside fields
of the export named like the tap's own (:data:`TAP_FIELDS`), so an export cannot forge them.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

import msgspec
from singer_plugin_common.amplitude_records import (
    AS_EXPORTED_KEY,
    EXTRA_FIELD,
    NUMBER_TEXTS_KEY,
    RESERVED_KEY,
)
from singer_plugin_common.exact_json import ExactFloat

from tap_amplitude.texts import clean

REPAIRS_FIELD = "repairs"
DUPLICATES_KEY = "duplicate_keys"  # in EXTRA_FIELD: earlier values of repeated keys
# Fields the tap sets itself (keys.py, lines.py, conform.py), and the two keys above: an
# export field of one of these names is kept in EXTRA_FIELD[RESERVED_KEY] instead.
TAP_FIELDS = frozenset(
    (
        "uuid_derived",
        "uuid_original",
        REPAIRS_FIELD,
        EXTRA_FIELD,
        DUPLICATES_KEY,
        RESERVED_KEY,
        AS_EXPORTED_KEY,
        NUMBER_TEXTS_KEY,
    )
)
REPAIR_BEYOND_DOUBLE = (
    "number beyond a double's range kept as a string of its exact text (e.g. 1e400)"
)
REPAIR_WIDE_INTEGER = (
    "integer of more than 4300 digits kept as a string of its exact text (Python's JSON "
    "readers, singer-sdk targets' included, refuse wider integers)"
)
REPAIR_DUPLICATE_KEYS = (
    "key repeated in one object: the last value kept, earlier ones in "
    "additional_properties.duplicate_keys"
)
REPAIR_RESERVED = (
    "export fields named like the tap's own kept in additional_properties.reserved_names"
)

_INFINITY = math.inf
MAX_INT_DIGITS = sys.int_info.default_max_str_digits  # 4300 (CPython 3.11+)

# Arrays and objects a line may nest (its own object is level 1). orjson, which writes every
# Singer message here and in target-posthog, refuses more than 254 levels ("Recursion limit
# reached"); a record is the tap's line plus at most 3 levels (additional_properties.
# duplicate_keys.<pointer>: [values]), its RECORD message one more, and target-posthog's batch
# payload a few more (batch, event, properties, $set). 200 leaves room for all of them, and no
# real event nests anywhere near it.
MAX_DEPTH = 200
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")


class BeyondDouble(str):
    """The exact text of a number beyond a double's range (an integer wider than
    :data:`MAX_INT_DIGITS` is one too), written as a JSON string (a str, so every writer takes
    it; its class lets conform.py give an id its one form)."""

    __slots__ = ()


class _Beyond:
    """Numbers kept as strings while decoding the current line: beyond a double's range
    (``count``), integers wider than :data:`MAX_INT_DIGITS` (``wide``)."""

    count = 0
    wide = 0
    exact = 0  # numbers read as an ExactFloat (number_texts.py)


def too_deep(line: bytes | str) -> bool:
    """Whether ``line`` nests arrays and objects more than :data:`MAX_DEPTH` levels (brackets
    inside strings not counted; an unterminated string runs to the end). Without recursion, so
    a line of 100,000 ``[`` costs a scan, not Python's stack; a line with fewer brackets than
    the limit (nearly all) costs two counts."""
    data = line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line
    if data.count(b"{") + data.count(b"[") <= MAX_DEPTH:
        return False
    depth = 0
    for bracket in _STRING.sub(b"", data).translate(None, _NOT_BRACKETS):
        if bracket in b"[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        else:
            depth -= 1
    return False


def number(text: str) -> Any:
    """The value of one non-integer JSON number literal, by the rules in the module docstring."""
    value = float(text)
    if value == 0.0:
        if text.lstrip("-").split("e")[0].split("E")[0].strip("0.") != "":
            _Beyond.count += 1
            return BeyondDouble(text)  # not zero, but a double would make it 0
        if text[0] == "-":  # -0.0: a decimal (target-postgres's numeric) stores 0
            _Beyond.exact += 1
            return ExactFloat(text)
    if value == _INFINITY or value == -_INFINITY:
        _Beyond.count += 1
        return BeyondDouble(text)
    if "e" in text or "E" in text or repr(value) != text:
        _Beyond.exact += 1
        return ExactFloat(text)
    return value


def integer(text: str) -> Any:
    """The value of one JSON integer literal read by the standard library: an ``int``, or for
    one wider than :data:`MAX_INT_DIGITS` digits the string of its text (module docstring)."""
    if text == "-0":  # an integer type holds no sign of zero: kept as its text (number_texts)
        _Beyond.exact += 1
        return ExactFloat(text)
    if len(text) > MAX_INT_DIGITS and len(text.lstrip("-")) > MAX_INT_DIGITS:
        _Beyond.wide += 1
        return BeyondDouble(text)
    return int(text)


def take_exact_count() -> int:
    """How many ExactFloats the last line read holds (0 afterwards, until the next line)."""
    count, _Beyond.exact = _Beyond.exact, 0
    return count


_DECODER = msgspec.json.Decoder(float_hook=number)
# msgspec.DecodeError (also for an integer wider than MAX_INT_DIGITS, which msgspec refuses;
# loads_text reads those), UnicodeDecodeError for bytes that are not UTF-8 (both ValueErrors),
# and RecursionError for arrays or objects nested about a thousand deep.
DecodeError = (ValueError, RecursionError)


def loads(line: bytes) -> Any:
    """One JSON value; raises one of :data:`DecodeError` when it is not valid JSON (RFC 8259:
    UTF-8 only, no lone surrogate escape, no NaN) or is nested too deep to read."""
    _Beyond.count = _Beyond.wide = _Beyond.exact = 0
    return _DECODER.decode(line)


def loads_text(text: str, *, strict: bool = True) -> Any:
    """One JSON value read by the standard library (for repaired text), the same numbers as
    :func:`loads`, integers of any width. Raises ``json.JSONDecodeError`` or ``ValueError``
    (NaN/Infinity), or ``RecursionError`` (see :func:`too_deep`, which callers check first)."""
    _Beyond.count = _Beyond.wide = _Beyond.exact = 0
    return json.loads(
        text, parse_float=number, parse_int=integer, parse_constant=_no_constant, strict=strict
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def settle(value: dict[str, Any], line: bytes | str, repairs: list[str]) -> None:
    """Finish a freshly read record in place: the export's fields named like the tap's moved
    aside, numbers beyond a double noted; each noted in ``repairs`` (which the caller stores on
    the record). Repeated keys are found by conform.py, which knows each record's shape."""
    if _Beyond.count:
        _Beyond.count = 0
        repairs.append(REPAIR_BEYOND_DOUBLE)
    if _Beyond.wide:
        _Beyond.wide = 0
        repairs.append(REPAIR_WIDE_INTEGER)
    if (
        "uuid_derived" in value
        or "uuid_original" in value
        or REPAIRS_FIELD in value
        or EXTRA_FIELD in value
        or DUPLICATES_KEY in value
        or RESERVED_KEY in value
        or AS_EXPORTED_KEY in value
        or NUMBER_TEXTS_KEY in value
    ):
        reserved = {key: value.pop(key) for key in [*value] if key in TAP_FIELDS}
        extra = value.setdefault(EXTRA_FIELD, {})
        extra[RESERVED_KEY] = reserved
        repairs.append(REPAIR_RESERVED)


def duplicate_keys(line: bytes | str) -> dict[str, list[Any]]:
    """``{JSON Pointer: [earlier values]}`` for every key repeated in one object of ``line``."""
    try:
        tree = json.loads(
            line.decode("utf-8", "replace") if isinstance(line, bytes) else line,
            parse_float=_uncounted_number,
            parse_int=_uncounted_integer,
            parse_constant=_no_constant,
            strict=False,
            object_pairs_hook=_Object.of,
        )
        found: dict[str, list[Any]] = {}
        _collect(tree, "", found)
    except (ValueError, RecursionError):  # nested deeper than Python's stack: none found
        return {}
    return found


class _Object(dict[str, Any]):
    """A JSON object as read, with the earlier values of its repeated keys."""

    earlier: dict[str, list[Any]]

    @classmethod
    def of(cls, items: list[tuple[str, Any]]) -> _Object:
        result = cls()
        result.earlier = {}
        for raw_key, item in items:
            # Keys as the record holds them: a repair (texts.py) can make two keys one.
            key = clean(raw_key)
            if key in result:
                result.earlier.setdefault(key, []).append(result[key])
            result[key] = item
        return result


def _collect(value: Any, pointer: str, found: dict[str, list[Any]]) -> None:
    if isinstance(value, _Object):
        for key, values in value.earlier.items():
            found[f"{pointer}/{_pointer_token(key)}"] = [_plain(v) for v in values]
        for key, item in value.items():
            _collect(item, f"{pointer}/{_pointer_token(key)}", found)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _collect(item, f"{pointer}/{index}", found)


def _plain(value: Any) -> Any:
    """Plain dicts for the kept values (their own repeats are reported on their own path)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _uncounted_number(text: str) -> Any:
    """`number`, for a second reading of a line already counted."""
    before = _Beyond.count, _Beyond.exact
    value = number(text)
    _Beyond.count, _Beyond.exact = before
    return value


def _uncounted_integer(text: str) -> Any:
    """`integer`, for a second reading of a line already counted."""
    before = _Beyond.wide
    value = integer(text)
    _Beyond.wide = before
    return value


def _pointer_token(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")
