"""The export's text of every number a double would change, kept as strings any target stores.

The tap writes each number with the export's own text (exactjson.py), and targets that read
numbers as decimals keep it (target-jsonl, MeltanoLabs' target-postgres). Others read every
JSON number as a double: target-duckdb 0.8.0 types a number field DOUBLE and writes object
fields back from doubles, so ``1.10`` becomes 1.1 and ``12.345678901234567890123``
12.345678901234567 (issue 15). No schema can lead it to an exact type. So each number whose
text a double does not give back (exactjson's ExactFloat: ``1.10``, ``1E+2``, ``1e19``,
long decimals), wherever it is in the record, also has its text kept as a string in the
record's ``additional_properties.number_texts``, under its JSON Pointer (RFC 6901:
``/location_lat``, ``/event_properties/price``): a string every target stores exactly.
Integers of any width need none (Python's json, which such targets use, reads them exactly).
"""

from __future__ import annotations

from typing import Any

from singer_plugin_common.exact_json import ExactFloat

from tap_amplitude.exactjson import EXTRA_FIELD, NUMBER_TEXTS_KEY


def keep_number_texts(record: dict[str, Any]) -> int:
    """Add the texts (module docstring) to ``record`` in place; how many there were."""
    texts: dict[str, str] = {}
    _collect(record, "", texts)
    if texts:
        extra = record.get(EXTRA_FIELD)
        if extra.__class__ is not dict:
            extra = record[EXTRA_FIELD] = {}
        extra[NUMBER_TEXTS_KEY] = texts
    return len(texts)


def _collect(value: Any, pointer: str, texts: dict[str, str]) -> None:
    kind = value.__class__
    if kind is ExactFloat:
        texts[pointer] = value.text
    elif kind is dict:
        for key, item in value.items():
            _collect(item, f"{pointer}/{key.replace('~', '~0').replace('/', '~1')}", texts)
    elif kind is list:
        for index, item in enumerate(value):
            _collect(item, f"{pointer}/{index}", texts)
