"""Records fitted to the `events` SCHEMA: one JSON type per field, converted exactly or kept aside.

The rules (tap-amplitude's README says the same to users, under "Records"):

- A value of the field's type, or null, is kept as it is.
- string field: a whole number becomes its digits (``4242424242.0``: ``"4242424242"``, as
  target-posthog writes a numeric id); any other number, a boolean, array or object its JSON
  text exactly as exported (``1.10`` becomes ``"1.10"``, ``true`` ``"true"``, ``[1, 2]``
  ``"[1, 2]"``).
- integer field: a number, or a string spelling a JSON number, whose value is a whole number
  within 64 bits becomes that integer (``"42"``, ``42.0`` and ``"4.2e1"`` become ``42``).
- number field: a string spelling a JSON number becomes that number (``"12.5"``: ``12.5``).
- boolean field: the strings ``"true"`` and ``"false"`` become ``true`` and ``false``.
- date-time field: a date and time in another ISO 8601 form becomes RFC 3339
  (``2024-03-01 10:00:00.123`` becomes ``2024-03-01T10:00:00.123+00:00``: Amplitude's times
  are UTC); RFC 3339 times with any offset are kept as they are.
- Any other value (``paying: "yes"``, ``location_lat: "n/a"``, a list in ``event_properties``)
  cannot be converted without changing it: the field is set to null and the value, as exported,
  is kept under the field's own name in the record's ``additional_properties`` object.
- Fields the schema does not name go to ``additional_properties`` as they are.

Nothing is dropped and nothing changes silently: every conversion and every value kept aside is
counted per field, JSON type found and outcome; the first of each kind is logged with the event's
uuid (never the value: event data can hold personal data), and :meth:`Conformer.summary` gives
the counts for the run's last log line.

Exact text needs the export line: the JSON parser has already turned ``1.10`` into ``1.1`` and a
20-digit integer into a float, so a string field's number is re-read from the line itself
(:func:`raw_values`). That slower path runs only for records that need a conversion.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import operator
import re
from collections import Counter
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any

import orjson

from tap_amplitude.schema import EXTRA_FIELD, INT64_MAX, INT64_MIN

logger = logging.getLogger("tap-amplitude")

JSON_TYPES: dict[type, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
    type(None): "null",
}
_ACCEPTED: dict[str, frozenset[type]] = {
    "string": frozenset((str, type(None))),
    "date-time": frozenset((str, type(None))),
    "integer": frozenset((int, type(None))),
    "number": frozenset((int, float, type(None))),
    "boolean": frozenset((bool, type(None))),
    "object": frozenset((dict, type(None))),
    "array": frozenset((list, type(None))),
}
# RFC 8259's number grammar: what a string must spell to become a number.
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_ISO_TIME = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})?"
)
# export.py's form of a time, `2024-03-01T10:00:00.123456+00:00`, with its digits read as 0.
_TIME_TEMPLATE = b"0000-00-00T00:00:00.000000+00:00"
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_FIVE = ord("5")
_DATE_HOUR = operator.itemgetter(slice(0, 13))
_not_none = partial(operator.is_not, None)
_FROM_ISO = dt.datetime.fromisoformat
_BOOLEANS = {"true": True, "false": False}
_DECODER = json.JSONDecoder()
_WHITESPACE = re.compile(r"[ \t\n\r]*")

CONVERTED = "converted"
KEPT_ASIDE = "kept aside"
UNKNOWN = "not in the schema"

_MISSING = object()  # no exact conversion
_EXACT_FLOAT_INTS = 2**53  # a float holds every whole number below this exactly
MAX_SHAPES = 1024  # key orders, and type patterns per key order, remembered


def field_kind(spec: dict[str, Any]) -> str:
    """The one JSON type of a schema property (``date-time`` for formatted strings)."""
    types = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
    (json_type,) = [t for t in types if t != "null"]
    return "date-time" if spec.get("format") == "date-time" else str(json_type)


class Conformer:
    """Fits records to a schema whose properties each have one JSON type; counts what it did.

    Call it with each parsed record and, when at hand, the line it was parsed from. The record is
    returned, changed in place where it does not fit: only its misfitting fields are handled.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        self.kinds = {
            name: field_kind(spec)
            for name, spec in schema["properties"].items()
            if name != EXTRA_FIELD
        }
        self._times = tuple(n for n, k in self.kinds.items() if k == "date-time")
        self._integers = tuple(n for n, k in self.kinds.items() if k == "integer")
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self._real_hours: set[str] = set()  # `YYYY-MM-DDTHH` seen to be real
        # Records of one project come in a few shapes (the same keys in the same order, the same
        # types but for nulls), and a misfit is usually one field of one shape (`paying` spelled
        # "true"). For each shape the fields whose type does not fit are remembered: a record is
        # then checked with two tuples and a lookup instead of a Python loop over ~55 fields,
        # which measured as a third of the tap's time. orjson reuses its key strings, so the key
        # tuples compare by identity.
        self._misfits: dict[tuple[str, ...], dict[tuple[type, ...], tuple[str, ...]]] = {}

    def __call__(self, record: dict[str, Any], line: bytes | None = None) -> dict[str, Any]:
        keys = tuple(record)
        types = tuple(map(type, record.values()))
        by_types = self._misfits.get(keys)
        misfits = None if by_types is None else by_types.get(types)
        if misfits is None:
            misfits = self._type_misfits(record)
            if by_types is None:
                if len(self._misfits) >= MAX_SHAPES:
                    self._misfits.clear()
                by_types = self._misfits[keys] = {}
            elif len(by_types) >= MAX_SHAPES:
                by_types.clear()
            by_types[types] = misfits
        # Values a type cannot judge: times, and integers beyond 64 bits.
        if not self._times_fit(record):
            misfits += tuple(
                key
                for key in self._times
                if (time := record.get(key)).__class__ is str and _fit_time(time) != (True, None)
            )
        if not self._integers_fit(record):
            misfits += tuple(
                key
                for key in self._integers
                if (value := record.get(key)).__class__ is int
                and not INT64_MIN <= value <= INT64_MAX
            )
        return self._fix(record, misfits, line) if misfits else record

    def _times_fit(self, record: dict[str, Any]) -> bool:
        """Whether every time is export.py's RFC 3339 form of a real time, in C-level passes over
        all of them at once (a fromisoformat per time cost more than the rest of this module)."""
        present: list[Any] = [*filter(_not_none, map(record.get, self._times))]
        if not present:
            return True
        try:
            joined = "".join(present).encode("ascii")
        except (TypeError, UnicodeEncodeError):  # not strings (a type misfit already), not ASCII
            return False
        # Shape, separators and digits at once: every digit read as 0 must give the template.
        if joined.translate(_DIGITS_AS_ZERO) != _TIME_TEMPLATE * len(present):
            return False
        if max(joined[14::32]) > _FIVE or max(joined[17::32]) > _FIVE:  # minutes, seconds
            return False
        hours = {*map(_DATE_HOUR, present)}
        return hours <= self._real_hours or self._learn_hours(hours)

    def _learn_hours(self, hours: set[str]) -> bool:
        """Whether each `YYYY-MM-DDTHH` is a real day and hour; remembers those that are."""
        try:
            for hour in hours - self._real_hours:
                _FROM_ISO(hour + ":00")
        except ValueError:
            return False
        if len(self._real_hours) >= MAX_SHAPES:
            self._real_hours.clear()
        self._real_hours |= hours
        return True

    def _integers_fit(self, record: dict[str, Any]) -> bool:
        """Whether every integer field is within 64 bits (C-level min and max)."""
        try:
            values = [*filter(None, map(record.get, self._integers))]
            return not values or (min(values) >= INT64_MIN and max(values) <= INT64_MAX)
        except TypeError:  # not all numbers (their type is a misfit already)
            return False

    def _type_misfits(self, record: dict[str, Any]) -> tuple[str, ...]:
        kinds = self.kinds
        return tuple(
            key
            for key, value in record.items()
            if (kind := kinds.get(key)) is None or value.__class__ not in _ACCEPTED[kind]
        )

    def _fix(
        self, record: dict[str, Any], misfits: tuple[str, ...], line: bytes | None
    ) -> dict[str, Any]:
        """`record` (changed in place: it is the parser's own) with each misfitting field
        converted exactly, or set to null and its value kept in EXTRA_FIELD; fields the schema
        does not name moved there too."""
        out = record
        extra: dict[str, Any] = {}
        texts: dict[str, str] | None = None
        for key in misfits:
            value = record[key]
            kind = self.kinds.get(key)
            if kind is None:
                del out[key]
                extra[key] = value
                self._count(record, key, value, UNKNOWN)
                continue
            fits, converted = _fit(kind, value)
            if fits:
                continue
            # The parser may have rounded a number (1.10 -> 1.1, 20 digits -> a float): string
            # and integer fields take it from the line's own text.
            if kind == "string" or (kind == "integer" and value.__class__ is float):
                if texts is None:
                    texts = raw_values(line) if line is not None else {}
                text = texts.get(key)
                if kind == "string":
                    converted = _as_text(value, text)
                elif text is not None:
                    converted = _to_integer(text)
            if converted is _MISSING:
                if kind == "date-time":
                    # export.py may have rewritten Amplitude's time shape: keep the export's.
                    if texts is None:
                        texts = raw_values(line) if line is not None else {}
                    value = _original(texts.get(key), value)
                out[key] = None
                extra[key] = value
                self._count(record, key, value, KEPT_ASIDE)
            else:
                out[key] = converted
                self._count(record, key, value, CONVERTED)
        if extra:
            out[EXTRA_FIELD] = extra
        return out

    def _count(self, record: dict[str, Any], key: str, value: Any, outcome: str) -> None:
        found = JSON_TYPES.get(value.__class__, value.__class__.__name__)
        counted = (key, found, outcome)
        self.counts[counted] += 1
        if self.counts[counted] > 1:
            return
        where = f"event {record.get('uuid')!s:.64}"
        if outcome == CONVERTED:
            logger.info(
                "%s: %s %s converted to %s (first in %s; counts at the end of the run)",
                key,
                _article(found),
                found,
                self.kinds[key],
                where,
            )
        elif outcome == KEPT_ASIDE:
            logger.warning(
                "%s: %s %s is not a %s and cannot be converted exactly; kept as exported in "
                "%s.%s, the field is null (first in %s; counts at the end of the run)",
                key,
                _article(found),
                found,
                self.kinds[key],
                EXTRA_FIELD,
                key,
                where,
            )
        else:
            logger.info(
                "%s: field not in the schema, kept in %s.%s (first in %s)",
                key,
                EXTRA_FIELD,
                key,
                where,
            )

    def summary(self) -> str:
        """``paying: 812 string converted to boolean; location_lat: 3 string kept aside in
        additional_properties; ...``, or ``""`` when every record fitted as it was."""
        parts = []
        for (key, found, outcome), count in sorted(self.counts.items()):
            if outcome == CONVERTED:
                parts.append(f"{key}: {count} {found} {outcome} to {self.kinds[key]}")
            else:
                parts.append(f"{key}: {count} {found} {outcome}, in {EXTRA_FIELD}")
        return "; ".join(parts)


def _article(json_type: str) -> str:
    return "an" if json_type[0] in "aeiou" else "a"


def _fit(kind: str, value: Any) -> tuple[bool, Any]:
    """(True, None) when `value` already fits `kind`; else (False, the exact conversion or
    _MISSING). String fields' non-strings are left to the caller (exact text from the line)."""
    cls = value.__class__
    if kind == "string":
        return cls is str, _MISSING
    if kind == "date-time":
        if cls is not str:
            return False, _MISSING
        return _fit_time(value)
    if kind == "integer":
        if cls is int:
            return INT64_MIN <= value <= INT64_MAX, _MISSING
        return False, _to_integer(value)
    if kind == "number":
        if cls is int or cls is float:
            return True, None
        return False, _to_number(value)
    if kind == "boolean":
        if cls is bool:
            return True, None
        return False, _BOOLEANS.get(value, _MISSING) if cls is str else _MISSING
    return _ACCEPTED[kind].__contains__(cls), _MISSING


def _fit_time(value: str) -> tuple[bool, Any]:
    match = _ISO_TIME.fullmatch(value)
    if match is None:
        return False, _MISSING
    day, clock, fraction, offset = match.groups()
    try:  # a real date and time? (fromisoformat checks ranges; nanoseconds cut for the check)
        dt.datetime.fromisoformat(f"{day}T{clock}{(fraction or '')[:7]}")
    except ValueError:
        return False, _MISSING
    if offset is not None and value[10] == "T":
        return True, None  # already RFC 3339
    zone = "+00:00" if offset is None or offset in "Zz" else offset
    return False, f"{day}T{clock}{fraction or ''}{zone}"


def _to_integer(value: Any) -> Any:
    if value.__class__ is bool or not isinstance(value, (str, float)):
        return _MISSING
    if isinstance(value, str) and not _JSON_NUMBER.fullmatch(value):
        return _MISSING
    try:
        number = Decimal(value)
    except InvalidOperation:
        return _MISSING
    if not number.is_finite() or number != number.to_integral_value():
        return _MISSING
    whole = int(number)
    return whole if INT64_MIN <= whole <= INT64_MAX else _MISSING


def _to_number(value: Any) -> Any:
    if value.__class__ is not str or not _JSON_NUMBER.fullmatch(value):
        return _MISSING
    try:
        return orjson.loads(value)  # the number the same text parses to as a JSON number
    except orjson.JSONDecodeError:  # beyond a double's range (1e400)
        return _MISSING


def _as_text(value: Any, text: str | None) -> str:
    """A non-string's exact text for a string field: a whole number as its digits (the one form
    target-posthog gives a numeric id, so `4242424242.0` and `4242424242` stay one user), any
    other value as the line spells it (`1.10` stays "1.10"), or re-encoded without a line."""
    if value.__class__ is int:
        return str(value)
    if value.__class__ is float and value.is_integer() and abs(value) < _EXACT_FLOAT_INTS:
        return str(int(value))
    return text if text is not None else orjson.dumps(value).decode()


def _original(text: str | None, value: Any) -> Any:
    """The value as the line spells it (`value` itself when the line does not say)."""
    return value if text is None else orjson.loads(text)


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
