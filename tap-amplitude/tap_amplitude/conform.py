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

The conversions are conversions.py's, the time rule times.py's; this module finds the
misfitting fields of each record (cheaply, by its shape), applies them, and counts.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from tap_amplitude import exactjson
from tap_amplitude.conversions import (
    ACCEPTED,
    CONTAINERS,
    JSON_TYPES,
    MISSING,
    article,
    as_text,
    cause,
    fit,
    raw_values,
)
from tap_amplitude.exactjson import (
    AS_EXPORTED_KEY,
    DUPLICATES_KEY,
    NUMBER_TEXTS_KEY,
)
from tap_amplitude.number_texts import keep_number_texts
from tap_amplitude.repeated_keys import keep_repeated_keys, may_repeat_keys
from tap_amplitude.schema import EXTRA_FIELD, INT64_MAX, INT64_MIN
from tap_amplitude.times import CutTime, TimesCheck

logger = logging.getLogger("tap-amplitude")

CONVERTED = "converted"
CUT = "converted, digits below a microsecond cut"
KEPT_ASIDE = "kept aside"
UNKNOWN = "not in the schema"

MAX_SHAPES = 1024  # key orders, and type patterns per key order, remembered
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
        self._times = TimesCheck(tuple(n for n, k in self.kinds.items() if k == "date-time"))
        self._integers = tuple(n for n, k in self.kinds.items() if k == "integer")
        self.counts: Counter[tuple[str, str, str]] = Counter()
        # Records of one project come in a few shapes (the same keys in the same order, the same
        # types but for nulls), and a misfit is usually one field of one shape (`paying` spelled
        # "true"). For each shape the fields whose type does not fit are remembered: a record is
        # then checked with two tuples and a lookup instead of a Python loop over ~55 fields,
        # which measured as a third of the tap's time. orjson reuses its key strings, so the key
        # tuples compare by identity.
        # With them, the fields holding objects (to count the keys a record holds, below).
        self._misfits: dict[tuple[str, ...], dict[tuple[type, ...], _Shape]] = {}
        self.repeated_keys = 0  # lines with a key given twice in one object
        self.number_texts = 0  # records with numbers a double would change

    def __call__(
        self,
        record: dict[str, Any],
        line: bytes | None = None,
        where: str = "",
        line_number: int = 0,
    ) -> dict[str, Any]:
        """``where`` (file, archive member) and ``line_number`` only name the place in the
        messages about what was converted or kept aside."""
        exact_numbers = exactjson.take_exact_count()  # read from this record's line
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
        # A key given twice (repeated_keys.py): the exact check only where counting fails.
        if line is not None and may_repeat_keys(record, objects, line):
            self._keep_repeated_keys(record, line, _Place(where, line_number))
        # Values a type cannot judge: times, and integers beyond 64 bits.
        if not self._times.fit(record):
            misfits += self._times.misfits(record)
        if not self._integers_fit(record):
            misfits += tuple(
                key
                for key in self._integers
                if (value := record.get(key)).__class__ is int
                and not INT64_MIN <= value <= INT64_MAX
            )
        if misfits:
            record = self._fix(record, misfits, line, where, line_number)
        # Numbers a double would change (read from the line, or converted), as text: last, as
        # these texts add keys (the count of keys above) and cover converted values too.
        if (exact_numbers or exactjson.take_exact_count()) and keep_number_texts(record):
            self.number_texts += 1
            if self.number_texts == 1:
                logger.info(
                    "%s: numbers a double would change (1.10, 1E+2, long decimals); their "
                    "texts also kept in %s.%s for targets that store doubles (first of its "
                    "kind; counts at the end of the run)",
                    _Place(where, line_number),
                    EXTRA_FIELD,
                    NUMBER_TEXTS_KEY,
                )
        return record

    def _keep_repeated_keys(self, record: dict[str, Any], line: bytes, place: _Place) -> None:
        earlier = keep_repeated_keys(record, line)
        if not earlier:
            return
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
            if (kind := kinds.get(key)) is None or value.__class__ not in ACCEPTED[kind]
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
            fits, converted = fit(kind, value)
            if fits:
                continue
            outcome = CONVERTED
            if kind == "string":
                if value.__class__ in CONTAINERS:  # its JSON text as the line spells it
                    if texts is None:
                        texts = raw_values(line) if line is not None else {}
                    converted = as_text(value, texts.get(key))
                else:
                    converted = as_text(value, None)
            elif kind == "date-time" and converted.__class__ is CutTime:
                outcome = CUT
            if converted is MISSING:
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
                cause(self.kinds[key], found, value),
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
                article(found),
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
        if self.number_texts:
            parts.append(
                f"{self.number_texts} records with numbers a double would change, their texts "
                f"in {EXTRA_FIELD}.{NUMBER_TEXTS_KEY}"
            )
        for (key, found, outcome), count in sorted(self.counts.items()):
            if outcome in (CONVERTED, CUT):
                parts.append(f"{key}: {count} {found} {outcome} to {self.kinds[key]}")
            else:
                parts.append(f"{key}: {count} {found} {outcome}, in {EXTRA_FIELD}")
        return "; ".join(parts)


class _Place:
    """Where a record was read (file, member, line), formatted only when a message is logged."""

    __slots__ = ("line_number", "where")

    def __init__(self, where: str, line_number: int) -> None:
        self.where, self.line_number = where, line_number

    def __str__(self) -> str:
        where = self.where or "a record"
        return f"{where}, line {self.line_number}" if self.line_number else where
