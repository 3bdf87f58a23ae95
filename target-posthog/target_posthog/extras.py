"""tap-amplitude's `additional_properties` object, put back into the record before mapping.

tap-amplitude gives every field one JSON type. It gathers the export's fields its schema does not
name in one object, `additional_properties`, and keeps there, under the field's own name, any
value it could not convert exactly to its field's type (that field is then null). Putting them
back gives the mapping the record as exported, so such fields reach PostHog as before: as
`$amplitude_<field>` properties, or through their own rule when they are fields the mapping uses.
Values the tap converted exactly (`paying: "true"`, documented as a boolean) arrive converted.
"""

from __future__ import annotations

from typing import Any

EXTRA_FIELD = "additional_properties"  # tap_amplitude.schema.EXTRA_FIELD


def with_extra_fields(record: dict[str, Any]) -> dict[str, Any]:
    """`record` with its `additional_properties` object's fields back at the top level.

    Returns `record` itself when it has no such object (the common case: one lookup). A value
    kept aside replaces the null the tap left in its field.
    """
    extra = record.get(EXTRA_FIELD)
    if extra.__class__ is not dict:
        return record
    merged = {key: value for key, value in record.items() if key != EXTRA_FIELD}
    merged.update(extra)
    return merged
