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

from tap_amplitude import exactjson
from tap_amplitude.exactjson import (
    AS_EXPORTED_KEY,
    DUPLICATES_KEY,
    REPAIR_DUPLICATE_KEYS,
    REPAIRS_FIELD,
    BeyondDouble,
    ExactFloat,
    duplicate_keys,
    number,
)
from tap_amplitude.schema import EXTRA_FIELD, INT64_MAX, INT64_MIN

logger = logging.getLogger("tap-amplitude")

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
_ACCEPTED: dict[str, frozenset[type]] = {
    "string": frozenset((str, type(None))),
    "date-time": frozenset((str, type(None))),
    "integer": frozenset((int, type(None))),
    "number": frozenset((int, float, ExactFloat, type(None))),
    "boolean": frozenset((bool, type(None))),
    "object": frozenset((dict, type(None))),
    "array": frozenset((list, type(None))),
}
# RFC 8259's number grammar: what a string must spell to become a number.
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_ISO_TIME = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:[.,](\d+))?([Zz]|([+-])(\d{2}):?(\d{2}))?"
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
CUT = "converted, digits below a microsecond cut"
KEPT_ASIDE = "kept aside"
UNKNOWN = "not in the schema"

_MISSING = object()  # no exact conversion
MAX_SHAPES = 1024  # key orders, and type patterns per key order, remembered
_KEY_END = b'":'
_MOST_DIGITS = 999  # a whole number's digits are written up to this exponent (then its text)
# (misfitting fields, fields holding objects) of one shape.
_Shape = tuple[tuple[str, ...], tuple[str, ...]]


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
        # With them, the fields holding objects (to count the keys a record holds, below).
        self._misfits: dict[tuple[str, ...], dict[tuple[type, ...], _Shape]] = {}
        self.repeated_keys = 0  # lines with a key given twice in one object

    def __call__(
        self,
        record: dict[str, Any],
        line: bytes | None = None,
        where: str = "",
        line_number: int = 0,
    ) -> dict[str, Any]:
        """``where`` (file, archive member) and ``line_number`` only name the place in the
        messages about what was converted or kept aside."""
        keys = tuple(record)
        types = tuple(map(type, record.values()))
        by_types = self._misfits.get(keys)
        shape = None if by_types is None else by_types.get(types)
        if shape is None:
            objects = tuple(key for key, kind in zip(keys, types, strict=True) if kind is dict)
            shape = (self._type_misfits(record), objects)
            if by_types is None:
                if len(self._misfits) >= MAX_SHAPES:
                    self._misfits.clear()
                by_types = self._misfits[keys] = {}
            elif len(by_types) >= MAX_SHAPES:
                by_types.clear()
            by_types[types] = shape
        misfits, objects = shape
        # A key given twice: the line spells more keys (a `":` each) than the record holds.
        # Counted at the first two levels from the shape; objects deeper down (group_properties)
        # or a `":` inside a string (a JSON text as a value) are settled by counting the
        # record written again, and only a real difference costs the exact check.
        if line is not None:
            spelled = line.count(_KEY_END)
            if spelled != len(keys) + sum(
                map(len, map(record.__getitem__, objects))
            ) and spelled != exactjson.dumps(record).count(_KEY_END):
                self._keep_repeated_keys(record, line, _Place(where, line_number))
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
        return self._fix(record, misfits, line, where, line_number) if misfits else record

    def _keep_repeated_keys(self, record: dict[str, Any], line: bytes, place: _Place) -> None:
        """Earlier values of keys the line repeats -> EXTRA_FIELD's DUPLICATES_KEY, a repair."""
        earlier = duplicate_keys(line)
        if not earlier:
            return
        extra = record.get(EXTRA_FIELD)
        if extra.__class__ is not dict:
            extra = record[EXTRA_FIELD] = {}
        extra[DUPLICATES_KEY] = earlier
        repairs = record.get(REPAIRS_FIELD)
        if repairs.__class__ is not list:
            repairs = record[REPAIRS_FIELD] = []
        repairs.append(REPAIR_DUPLICATE_KEYS)
        self.repeated_keys += 1
        if self.repeated_keys == 1:
            logger.warning(
                "%s: a key given twice in one object (%s); the last value kept, the earlier "
                "ones in %s.%s (first of its kind; counts at the end of the run)",
                place,
                ", ".join(sorted(earlier)[:5]),
                EXTRA_FIELD,
                DUPLICATES_KEY,
            )

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
        self,
        record: dict[str, Any],
        misfits: tuple[str, ...],
        line: bytes | None,
        where: str,
        line_number: int,
    ) -> dict[str, Any]:
        """`record` (changed in place: it is the parser's own) with each misfitting field
        converted exactly (the value as exported kept in EXTRA_FIELD's AS_EXPORTED_KEY), or set
        to null and its value kept in EXTRA_FIELD; fields the schema does not name moved there."""
        out = record
        extra: dict[str, Any] = {}
        exported: dict[str, Any] = {}
        texts: dict[str, str] | None = None
        place = _Place(where, line_number)
        for key in misfits:
            value = record[key]
            kind = self.kinds.get(key)
            if key == EXTRA_FIELD:
                continue  # the tap's own (exactjson.settle moved an export's of that name)
            if kind is None:
                del out[key]
                extra[key] = value
                self._count(place, key, value, UNKNOWN)
                continue
            fits, converted = _fit(kind, value)
            if fits:
                continue
            outcome = CONVERTED
            if kind == "string":
                if value.__class__ in _CONTAINERS:  # its JSON text as the line spells it
                    if texts is None:
                        texts = raw_values(line) if line is not None else {}
                    converted = _as_text(value, texts.get(key))
                else:
                    converted = _as_text(value, None)
            elif kind == "date-time" and converted.__class__ is _CutTime:
                outcome = CUT
            if converted is _MISSING:
                out[key] = None
                extra[key] = value
                self._count(place, key, value, KEPT_ASIDE)
            else:
                out[key] = str(converted) if outcome == CUT else converted
                if kind != "boolean":  # "true" -> true loses only the quotes (and is common)
                    exported[key] = value
                self._count(place, key, value, outcome)
        if exported:
            extra[AS_EXPORTED_KEY] = exported
        if extra:
            held = out.get(EXTRA_FIELD)  # exactjson.settle's (repeated keys, reserved names)
            if held.__class__ is dict:
                held.update(extra)
            else:
                out[EXTRA_FIELD] = extra
        return out

    def _count(self, place: _Place, key: str, value: Any, outcome: str) -> None:
        found = JSON_TYPES.get(value.__class__, value.__class__.__name__)
        counted = (key, found, outcome)
        self.counts[counted] += 1
        if self.counts[counted] > 1:
            return
        # One line, the place and the cause; never the value (event data can be personal).
        if outcome == KEPT_ASIDE:
            logger.warning(
                "%s: %s: %s; kept as exported in %s.%s, the field is null (first of its kind; "
                "counts at the end of the run)",
                place,
                key,
                _cause(self.kinds[key], found, value),
                EXTRA_FIELD,
                key,
            )
        elif outcome == UNKNOWN:
            logger.info(
                "%s: %s: field not in the schema, kept in %s.%s (first of its kind)",
                place,
                key,
                EXTRA_FIELD,
                key,
            )
        else:
            logger.info(
                "%s: %s: %s %s %s to %s; the value as exported kept in %s.%s.%s (first of its "
                "kind; counts at the end of the run)",
                place,
                key,
                _article(found),
                found,
                outcome,
                self.kinds[key],
                EXTRA_FIELD,
                AS_EXPORTED_KEY,
                key,
            )

    def summary(self) -> str:
        """``paying: 812 string converted to boolean; location_lat: 3 string kept aside in
        additional_properties; ...``, or ``""`` when every record fitted as it was."""
        parts = []
        if self.repeated_keys:
            parts.append(
                f"{self.repeated_keys} lines with a key given twice, earlier values in "
                f"{EXTRA_FIELD}.{DUPLICATES_KEY}"
            )
        for (key, found, outcome), count in sorted(self.counts.items()):
            if outcome in (CONVERTED, CUT):
                parts.append(f"{key}: {count} {found} {outcome} to {self.kinds[key]}")
            else:
                parts.append(f"{key}: {count} {found} {outcome}, in {EXTRA_FIELD}")
        return "; ".join(parts)


def _article(json_type: str) -> str:
    return "an" if json_type[0] in "aeiou" else "a"


class _Place:
    """Where a record was read (file, member, line), formatted only when a message is logged."""

    __slots__ = ("line_number", "where")

    def __init__(self, where: str, line_number: int) -> None:
        self.where, self.line_number = where, line_number

    def __str__(self) -> str:
        where = self.where or "a record"
        return f"{where}, line {self.line_number}" if self.line_number else where


def _cause(kind: str, found: str, value: Any) -> str:
    """Why a value cannot become its field's type, in words (never the value itself)."""
    if kind == "integer" and found == "integer":
        return "an integer beyond 64 bits"
    if kind == "date-time" and found == "string":
        return "a string that is not an ISO 8601 date and time"
    if kind == found:
        return f"{_article(found)} {found} that does not fit"
    return f"{_article(found)} {found} that does not convert exactly to {_article(kind)} {kind}"


class _CutTime(str):
    """A time converted with digits below a microsecond cut (counted apart)."""


_CONTAINERS = (dict, list)


def _fit(kind: str, value: Any) -> tuple[bool, Any]:
    """(True, None) when `value` already fits `kind`; else (False, the exact conversion or
    _MISSING). String fields' non-strings are left to the caller (`_as_text`)."""
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
        if cls is int or cls is float or cls is ExactFloat:
            return True, None
        return False, _to_number(value)
    if kind == "boolean":
        if cls is bool:
            return True, None
        return False, _BOOLEANS.get(value, _MISSING) if cls is str else _MISSING
    return _ACCEPTED[kind].__contains__(cls), _MISSING


def _fit_time(value: str) -> tuple[bool, Any]:
    """A time in any ISO 8601 date-and-time form -> the tap's form, UTC with microseconds
    (`2024-03-01T05:10:00.000000+00:00`). No offset means UTC (Amplitude's times are UTC).
    Digits below a microsecond are cut (the time moves back, never past its second): the
    result is then a `_CutTime`."""
    match = _ISO_TIME.fullmatch(value)
    if match is None:
        return False, _MISSING
    day, clock, fraction, _zone, sign, zone_hours, zone_minutes = match.groups()
    digits = fraction or ""
    try:
        moment = dt.datetime.fromisoformat(f"{day}T{clock}.{digits[:6].ljust(6, '0')}")
        if sign is not None:
            offset = dt.timedelta(hours=int(zone_hours), minutes=int(zone_minutes))
            if offset >= dt.timedelta(hours=24):
                return False, _MISSING
            moment -= offset if sign == "+" else -offset
    except (ValueError, OverflowError):
        return False, _MISSING
    canonical = f"{moment.isoformat(timespec='microseconds')}+00:00"
    if canonical == value:
        return True, None
    return False, _CutTime(canonical) if digits[6:].strip("0") else canonical


def _to_integer(value: Any) -> Any:
    """A whole number within 64 bits from a number or a string spelling one, else _MISSING."""
    cls = value.__class__
    if cls is str:
        if not _JSON_NUMBER.fullmatch(value):
            return _MISSING
        text = value
    elif cls is ExactFloat:
        text = value.text
    elif cls is float:
        text = repr(value)  # exactjson's plain floats are spelled so in the export
    else:
        return _MISSING
    try:
        exact = Decimal(text)
    except InvalidOperation:
        return _MISSING
    if not exact.is_finite() or exact != exact.to_integral_value():
        return _MISSING
    whole = int(exact)
    return whole if INT64_MIN <= whole <= INT64_MAX else _MISSING


def _to_number(value: Any) -> Any:
    """The number a string spells, as exactjson reads the same text as a JSON number."""
    if value.__class__ is not str or not _JSON_NUMBER.fullmatch(value):
        return _MISSING
    if "." not in value and "e" not in value and "E" not in value:
        return int(value)
    converted = number(value)
    return _MISSING if converted.__class__ is BeyondDouble else converted  # kept aside


def _as_text(value: Any, text: str | None) -> str:
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
    return text if text is not None else exactjson.dumps(value).decode()


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
