"""target-posthog maps tap-amplitude's typed records as it mapped the export's own records.

The tap now gives each field one type and gathers what its schema does not name in
`additional_properties`; the target puts those back before mapping. Each case maps the export
record as it was (the old path: times rewritten, nothing else) and as the tap now emits it, and
compares the PostHog events field for field.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from tap_amplitude.conform import Conformer
from tap_amplitude.schema import EVENTS_SCHEMA, EXTRA_FIELD
from tap_amplitude.times import normalise_record
from target_posthog.extras import with_extra_fields
from target_posthog.mapping import UnmappableError, map_record

from tests.target_support import START
from tests.testbed.generator import ExportSpec, generate_events

BASE: dict[str, Any] = {
    "uuid": "1c9c7d0e-3b7e-4b59-9a51-6f0e8d2c4a11",
    "event_type": "Song Played",
    "event_time": "2024-03-01 10:00:00.123456",
    "server_upload_time": "2024-03-01 10:00:01.000000",
    "user_id": "user-42",
    "device_id": "device-7",
    "event_properties": {"song": "x"},
    "user_properties": {"plan": "pro"},
    "paying": None,
    "$schema": 12,
    "location_lat": 52.5,
}


def mapped(record: dict[str, Any]) -> list[dict[str, Any]] | str:
    try:
        return map_record(record).events
    except UnmappableError as error:
        return f"unmappable: {error.reason}"


def through_tap(raw: dict[str, Any]) -> dict[str, Any]:
    line = orjson.dumps(raw)
    record = Conformer(EVENTS_SCHEMA)(normalise_record(orjson.loads(line)), line)
    return orjson.loads(orjson.dumps(record))  # as the target reads it from the Singer line


def before_and_after(changes: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    raw = {**copy.deepcopy(BASE), **changes}
    tapped = through_tap(raw)
    return mapped(normalise_record(copy.deepcopy(raw))), mapped(with_extra_fields(tapped)), tapped


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"brand_new_field": {"nested": [1, "x"]}, "another_new": "v"},  # fields added later
        {"paying": "maybe"},  # not a boolean: kept aside, sent as it was exported
        {"location_lat": "n/a"},
        {"$schema": None, "amplitude_id": "not-a-number"},
        {"event_properties": ["a", "list"]},  # the mapping's own rule for a non-object
        {"event_time": "2024-13-45 99:61:00.000000"},  # dead-lettered, same reason
        {"event_time": "not-a-time"},
        {"user_id": None, "device_id": None},
    ],
)
def test_what_the_tap_keeps_aside_reaches_posthog_as_before(changes: dict[str, Any]) -> None:
    before, after, _ = before_and_after(changes)
    assert after == before


def test_unknown_fields_become_amplitude_properties_as_before() -> None:
    before, after, tapped = before_and_after({"brand_new_field": {"n": 1}})
    assert tapped[EXTRA_FIELD] == {"brand_new_field": {"n": 1}}
    assert isinstance(after, list)
    assert after[0]["properties"]["$amplitude_brand_new_field"] == {"n": 1}
    assert after == before


@pytest.mark.parametrize(
    ("changes", "field", "converted"),
    [
        ({"paying": "true"}, "$amplitude_paying", True),
        ({"paying": "false"}, "$amplitude_paying", False),
        ({"$schema": "12"}, "$amplitude_schema", 12),
    ],
)
def test_values_converted_exactly_arrive_in_their_documented_type(
    changes: dict[str, Any], field: str, converted: Any
) -> None:
    """The one difference: a value spelled in another type arrives as the type Amplitude
    documents (`paying` boolean, `$schema` int), and, but for the quotes of a boolean, the
    value as exported in `$amplitude_as_exported`. Every other property is unchanged."""
    before, after, _ = before_and_after(changes)
    assert isinstance(before, list)
    assert isinstance(after, list)
    (old,), (new,) = before, after
    assert old["properties"][field] == next(iter(changes.values()))
    assert new["properties"][field] == converted
    assert type(new["properties"][field]) is type(converted)
    old["properties"].pop(field)
    new["properties"].pop(field)
    kept = new["properties"].pop("$amplitude_as_exported", None)
    assert kept == (None if isinstance(converted, bool) else changes)
    assert new == old


def test_a_generated_export_maps_alike_but_for_the_converted_paying() -> None:
    spec = ExportSpec(start=START, hours=6, events=600, seed=5, invalid_fraction=0.1)
    compared = 0
    for raw in generate_events(spec):
        before = mapped(normalise_record(copy.deepcopy(raw)))
        after = mapped(with_extra_fields(through_tap(raw)))
        if isinstance(before, list) and raw.get("paying") is not None:
            for event in before:
                if "$amplitude_paying" in event["properties"]:
                    event["properties"]["$amplitude_paying"] = raw["paying"] == "true"
        assert after == before, raw["uuid"]
        compared += 1
    assert compared == 600


def test_number_texts_are_not_sent_but_another_taps_field_of_that_name_is() -> None:
    """tap-amplitude's additional_properties.number_texts copies, as text, numbers the record
    holds exactly: not put back (PostHog gets the numbers as exported). A top-level field of
    that name (another tap's) is the record's own and stays."""
    record = {"a": 1, "additional_properties": {"number_texts": {"/a": "1"}, "new": 2}}
    assert with_extra_fields(record) == {"a": 1, "new": 2}
    assert with_extra_fields({**record, "number_texts": "mine"}) == {
        "a": 1,
        "number_texts": "mine",
        "new": 2,
    }


def test_a_dead_letter_gives_back_the_uuid_as_exported_when_the_tap_made_it_canonical() -> None:
    """tap-amplitude writes `{...}`/upper-case uuids canonical and keeps the text in
    uuid_original; a dead letter is the record as the export held it."""
    from target_posthog.extras import as_exported

    spelled = "{56780000-0000-4000-8000-0000000000AA}"
    tapped = BASE | {"uuid": "56780000-0000-4000-8000-0000000000aa", "uuid_original": spelled}
    letter = as_exported(tapped)
    assert letter["uuid"] == spelled and "uuid_original" not in letter
    assert as_exported(BASE)["uuid"] == BASE["uuid"]
