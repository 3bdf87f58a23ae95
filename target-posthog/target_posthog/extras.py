"""tap-amplitude's `additional_properties` object, put back into the record before mapping.

tap-amplitude gives every field one JSON type. It gathers the export's fields its schema does not
name in one object, `additional_properties`, and keeps there, under the field's own name, any
value it could not convert exactly to its field's type (that field is then null). Putting them
back gives the mapping the record as exported, so such fields reach PostHog as before: as
`$amplitude_<field>` properties, or through their own rule when they are fields the mapping uses.
Values the tap converted exactly (`paying: "true"`, documented as a boolean) arrive converted.
"""

from __future__ import annotations

import re
from typing import Any

from singer_plugin_common.amplitude_records import (
    AS_EXPORTED_KEY,
    EXTRA_FIELD,
    NUMBER_TEXTS_KEY,
    RESERVED_KEY,
    TIME_FIELDS,
)


def with_extra_fields(record: dict[str, Any]) -> dict[str, Any]:
    """`record` with its `additional_properties` object's fields back at the top level.

    Returns `record` itself when it has no such object (the common case: one lookup). A value
    kept aside replaces the null the tap left in its field. The texts of numbers a double would
    change (`number_texts`, for targets that store doubles: tap-amplitude's number_texts.py) are
    not put back: the record holds those numbers exactly, and so does the payload.
    """
    extra = record.get(EXTRA_FIELD)
    if extra.__class__ is not dict:
        return record
    merged = {key: value for key, value in record.items() if key != EXTRA_FIELD}
    merged.update(extra)
    if NUMBER_TEXTS_KEY in extra:  # a copy, as text, of numbers the record holds exactly
        del merged[NUMBER_TEXTS_KEY]
        if NUMBER_TEXTS_KEY in record:
            merged[NUMBER_TEXTS_KEY] = record[NUMBER_TEXTS_KEY]  # another tap's own field
    return merged


# tap-amplitude's own fields (its exactjson.TAP_FIELDS, besides the keys named above).
TAP_ONLY_FIELDS = ("uuid_derived", "uuid_original", "repairs")
# tap-amplitude's form of the times in TIME_FIELDS.
_TAP_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}\+00:00")


def as_exported(record: dict[str, Any]) -> dict[str, Any]:
    """A tap-amplitude record (`with_extra_fields` applied) as the export held it, for a dead
    letter a user can fix and feed again.

    Undoes what the tap documents it does: values it converted come back from
    `additional_properties.as_exported`, the export's own fields named like the tap's from
    `reserved_names`, a derived or canonicalised uuid gives way to the original (or none), the
    tap's markers (`uuid_derived`, `uuid_original`, `repairs`) go, and times in the tap's form
    go back to Amplitude's `YYYY-MM-DD HH:MM:SS.ffffff`. (A time the export itself spelled in
    the tap's RFC 3339 form also comes back in Amplitude's: the same instant.) `duplicate_keys`
    stays: one JSON object cannot hold a key twice.
    """
    out = dict(record)
    converted = out.pop(AS_EXPORTED_KEY, None)
    reserved = out.pop(RESERVED_KEY, None)
    if out.get("uuid_derived") is True:
        original = out.get("uuid_original")
        if original is None:
            out.pop("uuid", None)
        else:
            out["uuid"] = original
    elif "uuid_original" in out:  # a uuid the tap wrote in its canonical form
        out["uuid"] = out["uuid_original"]
    for field in TAP_ONLY_FIELDS:
        out.pop(field, None)
    for field in TIME_FIELDS:
        value = out.get(field)
        if value.__class__ is str and _TAP_TIME.fullmatch(value):
            out[field] = f"{value[:10]} {value[11:26]}"
    if isinstance(converted, dict):
        out.update(converted)
    if isinstance(reserved, dict):
        out.update(reserved)
    return out
