"""Exact conversions of one value to its field's JSON type (the rules in conform.py's docstring).

Each ``to_*`` gives the exact conversion, or :data:`MISSING` when there is none (the value is
then kept aside as exported). Exact text needs the export line: the JSON parser has already
turned ``1.10`` into ``1.1``, so a string field's object or array is re-read from the line
itself (:func:`raw_values`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from singer_plugin_common import exact_json
from singer_plugin_common.exact_json import ExactFloat

from tap_amplitude.exactjson import BeyondDouble, number
from tap_amplitude.schema import INT64_MAX, INT64_MIN
from tap_amplitude.texts import clean
from tap_amplitude.times import MISSING, fit_time

JSON_TYPES: dict[type, str] = {
    str: "string",
    BeyondDouble: "number",  # exported as a number; a string of its text (exactjson)
    int: "integer",
    float: "number",
    ExactFloat: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
    type(None): "null",
}
ACCEPTED: dict[str, frozenset[type]] = {
    "string": frozenset((str, type(None))),
    "date-time": frozenset((str, type(None))),
    "integer": frozenset((int, type(None))),
    "number": frozenset((int, float, ExactFloat, type(None))),
    "boolean": frozenset((bool, type(None))),
    "object": frozenset((dict, type(None))),
    "array": frozenset((list, type(None))),
}
CONTAINERS = (dict, list)
# RFC 8259's number grammar: what a string must spell to become a number.
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_BOOLEANS = {"true": True, "false": False}
# Only finds where each value ends (raw_values): numbers are not converted, so an integer of
# any width (past Python's 4300-digit limit too) is found like any other.
_DECODER = json.JSONDecoder(parse_int=str, parse_float=str, parse_constant=str, strict=False)
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_MOST_DIGITS = 999  # a whole number's digits are written up to this exponent (then its text)


def article(json_type: str) -> str:
    return "an" if json_type[0] in "aeiou" else "a"


def cause(kind: str, found: str, value: Any) -> str:
    """Why a value cannot become its field's type, in words (never the value itself)."""
    if kind == "integer" and found == "integer":
        return "an integer beyond 64 bits"
    if kind == "integer" and found == "number" and _whole(value):  # 1e19, 1.0e19, 1e400
        return "a whole number beyond 64 bits"
    if value.__class__ is BeyondDouble:  # 1e400, 1e-400, an integer of 4301+ digits
        return "a number beyond a double's range"
    if kind == "date-time" and found == "string":
        return "a string that is not an ISO 8601 date and time"
    if kind == found:
        return f"{article(found)} {found} that does not fit"
    return f"{article(found)} {found} that does not convert exactly to {article(kind)} {kind}"


def _whole(value: Any) -> bool:
    """Whether a number read by exactjson (float, ExactFloat, BeyondDouble) is whole."""
    text = value.text if value.__class__ is ExactFloat else str(value)
    try:
        exact = Decimal(text if value.__class__ is not float else repr(value))
    except InvalidOperation:
        return False
    return exact.is_finite() and exact == exact.to_integral_value()


def fit(kind: str, value: Any) -> tuple[bool, Any]:
    """(True, None) when `value` already fits `kind`; else (False, the exact conversion or
    MISSING). String fields' non-strings are left to the caller (`as_text`)."""
    cls = value.__class__
    if kind == "string":
        return cls is str, MISSING
    if kind == "date-time":
        if cls is not str:
            return False, MISSING
        return fit_time(value)
    if kind == "integer":
        if cls is int:
            return INT64_MIN <= value <= INT64_MAX, MISSING
        return False, to_integer(value)
    if kind == "number":
        if cls is int or cls is float or cls is ExactFloat:
            return True, None
        return False, to_number(value)
    if kind == "boolean":
        if cls is bool:
            return True, None
        return False, _BOOLEANS.get(value, MISSING) if cls is str else MISSING
    return ACCEPTED[kind].__contains__(cls), MISSING


def to_integer(value: Any) -> Any:
    """A whole number within 64 bits from a number or a string spelling one, else MISSING."""
    cls = value.__class__
    if cls is str:
        if not _JSON_NUMBER.fullmatch(value):
            return MISSING
        text = value
    elif cls is ExactFloat:
        text = value.text
    elif cls is float:
        text = repr(value)  # exactjson's plain floats are spelled so in the export
    else:
        return MISSING
    try:
        exact = Decimal(text)
    except InvalidOperation:
        return MISSING
    if not exact.is_finite() or exact != exact.to_integral_value():
        return MISSING
    whole = int(exact)
    return whole if INT64_MIN <= whole <= INT64_MAX else MISSING


def to_number(value: Any) -> Any:
    """The number a string spells, as exactjson reads the same text as a JSON number."""
    if value.__class__ is not str or not _JSON_NUMBER.fullmatch(value):
        return MISSING
    if "." not in value and "e" not in value and "E" not in value:
        return int(value)
    converted = number(value)
    return MISSING if converted.__class__ is BeyondDouble else converted  # kept aside


def as_text(value: Any, text: str | None) -> str:
    """A non-string's exact text for a string field.

    A number whose exact value is whole becomes its digits, whatever its spelling
    (`4242424242`, `4242424242.0`, `4.242424242e9` are all "4242424242"; `1e20` is
    "100000000000000000000"): the one form target-posthog gives a numeric id, so one user
    stays one user (`1e400` too: 401 digits; a whole number of 1,000 digits or more keeps its
    text). Any other number keeps its text as exported (`1.10` stays "1.10"; a non-integral id
    is never rounded). true/false, arrays and objects become their JSON text as
    the line spells it (`text`), or as the tap writes them when the line does not say.
    """
    cls = value.__class__
    if cls is int:
        return str(value)
    if cls is float or cls is ExactFloat or cls is BeyondDouble:
        spelled = (
            str(value) if cls is BeyondDouble else value.text if cls is ExactFloat else repr(value)
        )
        exact = Decimal(spelled)
        if exact.adjusted() < _MOST_DIGITS and exact == exact.to_integral_value():
            return str(int(exact))
        return spelled
    if cls is bool:
        return "true" if value else "false"
    # The line's own text may hold a raw NUL, repaired in the record already (texts.py).
    return clean(text) if text is not None else exact_json.dumps(value).decode()


def raw_values(line: bytes) -> dict[str, str]:
    """The exact JSON text of each top-level value of one JSON-object line.

    A key that appears twice keeps its last value, as the parsed record does. Returns ``{}``
    for a line that is not one JSON object (the caller then falls back to re-encoding).
    """
    text = line.decode("utf-8", "replace")
    values: dict[str, str] = {}
    scan: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
    try:
        i = _WHITESPACE.match(text, 0).end()  # type: ignore[union-attr]
        if text[i] != "{":
            return {}
        i = _WHITESPACE.match(text, i + 1).end()  # type: ignore[union-attr]
        while text[i] != "}":
            key, i = scan(text, i + 1)
            i = _WHITESPACE.match(text, i).end()  # type: ignore[union-attr]
            if text[i] != ":":
                return {}
            start = _WHITESPACE.match(text, i + 1).end()  # type: ignore[union-attr]
            _, end = _DECODER.raw_decode(text, start)
            values[key] = text[start:end]
            i = _WHITESPACE.match(text, end).end()  # type: ignore[union-attr]
            if text[i] == ",":
                i = _WHITESPACE.match(text, i + 1).end()  # type: ignore[union-attr]
            elif text[i] != "}":
                return {}
    except (IndexError, ValueError):
        return {}
    return values
