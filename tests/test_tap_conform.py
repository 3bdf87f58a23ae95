"""One JSON type per field: exact conversions, values kept aside, unknown fields gathered.

Every case starts from an export line as Amplitude would write it (the exact text matters:
`1.10` must stay `1.10`), goes through the tap's own parsing and conform step, and checks the
record against the SCHEMA with a Draft 7 validator, as a strict target would.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from jsonschema import Draft7Validator
from singer_plugin_common import exact_json
from tap_amplitude import exactjson
from tap_amplitude.conform import Conformer
from tap_amplitude.conversions import raw_values
from tap_amplitude.keys import ensure_uuid, has_usable_uuid
from tap_amplitude.lines import parse_line
from tap_amplitude.schema import EVENTS_SCHEMA, EXTRA_FIELD
from tap_amplitude.times import normalise_record

VALIDATOR = Draft7Validator(EVENTS_SCHEMA)
UUID = "5d6c1f9e-8f3a-4c55-9b1e-0d2f4a6b8c01"
BASE_FIELDS = {
    "uuid": f'"{UUID}"',
    "event_type": '"Play"',
    "event_time": '"2024-03-01 10:00:00.123456"',
    "user_id": '"u1"',
    "event_properties": '{"a": 1}',
}
BASE = "{" + ", ".join(f'"{key}": {value}' for key, value in BASE_FIELDS.items())


def conform_line(text: str, conformer: Conformer | None = None) -> dict[str, Any]:
    """One export line through the same steps as the tap: parse, times, conform; validated."""
    conformer = conformer or Conformer(EVENTS_SCHEMA)
    line = text.encode()
    record = conformer(normalise_record(parse_line(line)), line)
    VALIDATOR.validate(record)
    return record


def with_fields(fields: str) -> str:
    """BASE with `fields` (top-level, written `"key": value`) added or in place of its own."""
    base = [f'"{k}": {v}' for k, v in BASE_FIELDS.items() if f'"{k}": ' not in fields]
    return "{" + ", ".join([*base, fields]) + "}"


def test_every_schema_field_has_one_json_type_plus_null() -> None:
    for name, spec in EVENTS_SCHEMA["properties"].items():
        types = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
        assert len([t for t in types if t != "null"]) == 1, name
    assert EVENTS_SCHEMA["additionalProperties"] is False
    documented = EVENTS_SCHEMA["properties"]
    assert documented["paying"]["type"] == ["boolean", "null"]
    assert documented["$schema"]["type"] == ["integer", "null"]
    assert documented["amplitude_attribution_ids"]["type"] == ["string", "null"]
    assert documented["is_attribution_event"]["type"] == ["boolean", "null"]


def test_a_record_that_fits_is_returned_untouched() -> None:
    conformer = Conformer(EVENTS_SCHEMA)
    line = with_fields('"paying": true, "amplitude_id": 7, "location_lat": 1.5').encode()
    record = normalise_record(parse_line(line))
    assert conformer(record, line) is record
    assert not conformer.counts


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ('"paying": "true"', {"paying": True}),
        ('"paying": "false"', {"paying": False}),
        ('"is_attribution_event": "true"', {"is_attribution_event": True}),
        # string fields: the number's exact text, never the parser's rounding
        ('"version_name": 1.10', {"version_name": "1.10"}),
        ('"user_id": 12345', {"user_id": "12345"}),
        ('"device_id": 123456789012345678901234', {"device_id": "123456789012345678901234"}),
        ('"platform": 1e3', {"platform": "1000"}),  # a whole number: its digits
        ('"user_id": 4242424242.0', {"user_id": "4242424242"}),
        ('"device_id": 12.50', {"device_id": "12.50"}),
        ('"city": false', {"city": "false"}),
        (
            '"amplitude_attribution_ids": ["a1", "b2"]',
            {"amplitude_attribution_ids": '["a1", "b2"]'},
        ),
        ('"idfa": {"k":[1.50, null]}', {"idfa": '{"k":[1.50, null]}'}),
        # integers: whole values within 64 bits, from any JSON spelling
        ('"amplitude_id": "42"', {"amplitude_id": 42}),
        ('"amplitude_id": 42.0', {"amplitude_id": 42}),
        ('"$schema": "12"', {"$schema": 12}),
        ('"session_id": "4.2e1"', {"session_id": 42}),
        ('"event_id": 9007199254740993.0', {"event_id": 9007199254740993}),
        # numbers
        ('"location_lat": "12.5"', {"location_lat": 12.5}),
        ('"location_lng": "13.4050"', {"location_lng": 13.405}),  # written 13.4050 (below)
        ('"sample_rate": "-0.25e-1"', {"sample_rate": -0.025}),
        # times in another ISO 8601 form: the tap's form, UTC with microseconds (no offset: UTC)
        (
            '"client_event_time": "2024-03-01 10:00:00.123"',
            {"client_event_time": "2024-03-01T10:00:00.123000+00:00"},
        ),
        (
            '"processed_time": "2024-03-01T10:00:00"',
            {"processed_time": "2024-03-01T10:00:00.000000+00:00"},
        ),
        (
            '"server_upload_time": "2024-03-01 10:00:00Z"',
            {"server_upload_time": "2024-03-01T10:00:00.000000+00:00"},
        ),
        (
            '"event_time": "2024-03-01T07:10:00+02:00"',
            {"event_time": "2024-03-01T05:10:00.000000+00:00"},
        ),
        (
            '"server_upload_time": "2024-03-01T00:30:00.5-01:30"',
            {"server_upload_time": "2024-03-01T02:00:00.500000+00:00"},
        ),
        (
            '"client_upload_time": "2024-03-01T10:00:00.123456+00:00"',  # already the tap's
            {},
        ),
    ],
)
def test_values_of_another_type_are_converted_exactly_and_counted(
    fields: str, expected: dict[str, Any]
) -> None:
    conformer = Conformer(EVENTS_SCHEMA)
    record = conform_line(with_fields(fields), conformer)
    for key, value in expected.items():
        assert record[key] == value
        assert type(record[key]) is type(value) or (
            type(value) is float and type(record[key]) is exact_json.ExactFloat
        )
    # Each converted value is kept as exported, exactly (its text, for numbers).
    exported = parse_line(("{" + fields + "}").encode())
    exported = {
        k: v
        for k, v in exported.items()
        if k in expected and expected[k] is not True and expected[k] is not False
    }
    extra = dict(record.get(EXTRA_FIELD) or {})
    # A number a double would change (as exported, or converted) also has its text as a string.
    texts = extra.pop("number_texts", {})
    assert all(pointer.startswith("/") and text in fields for pointer, text in texts.items())
    if exported:
        assert exact_json.dumps(extra) == exact_json.dumps({"as_exported": exported})
    else:
        assert not extra
    assert sum(conformer.counts.values()) == len(expected)
    assert all(outcome == "converted" for _, _, outcome in conformer.counts)


def test_a_number_spelled_in_a_string_keeps_its_exact_text_in_a_number_field() -> None:
    record = conform_line(with_fields('"location_lng": "13.4050", "location_lat": "1E+1"'))
    written = exact_json.dumps(record)
    assert b'"location_lng":13.4050,' in written
    assert b'"location_lat":1E+1,' in written


def test_digits_below_a_microsecond_are_cut_counted_apart_and_kept_as_exported() -> None:
    conformer = Conformer(EVENTS_SCHEMA)
    exported = "2024-03-01T07:10:00.123456789+02:00"
    record = conform_line(with_fields(f'"event_time": "{exported}"'), conformer)
    assert record["event_time"] == "2024-03-01T05:10:00.123456+00:00"
    assert type(record["event_time"]) is str
    assert record[EXTRA_FIELD] == {"as_exported": {"event_time": exported}}
    assert conformer.summary() == (
        "event_time: 1 string converted, digits below a microsecond cut to date-time"
    )
    # Zeros below the microsecond lose nothing: a plain conversion.
    conformer = Conformer(EVENTS_SCHEMA)
    record = conform_line(with_fields('"event_time": "2024-03-01T05:10:00.123456000Z"'), conformer)
    assert record["event_time"] == "2024-03-01T05:10:00.123456+00:00"
    assert conformer.summary() == "event_time: 1 string converted to date-time"


@pytest.mark.parametrize(
    ("fields", "kept"),
    [
        ('"paying": "yes"', {"paying": "yes"}),
        ('"paying": "True"', {"paying": "True"}),
        ('"paying": 1', {"paying": 1}),
        ('"amplitude_id": "abc"', {"amplitude_id": "abc"}),
        ('"amplitude_id": " 42"', {"amplitude_id": " 42"}),
        ('"amplitude_id": 4.5', {"amplitude_id": 4.5}),
        ('"amplitude_id": true', {"amplitude_id": True}),
        ('"amplitude_id": 9223372036854775808', {"amplitude_id": 9223372036854775808}),
        ('"location_lat": "n/a"', {"location_lat": "n/a"}),
        ('"location_lat": "1e400"', {"location_lat": "1e400"}),
        ('"location_lng": [1, 2]', {"location_lng": [1, 2]}),
        ('"event_properties": [1, 2]', {"event_properties": [1, 2]}),
        ('"groups": "company"', {"groups": "company"}),
        ('"event_time": "yesterday"', {"event_time": "yesterday"}),
        ('"client_event_time": "2024-03-01 10:00"', {"client_event_time": "2024-03-01 10:00"}),
        (
            '"client_event_time": "2024-02-30T10:00:00Z"',
            {"client_event_time": "2024-02-30T10:00:00Z"},
        ),
        ('"client_upload_time": ""', {"client_upload_time": ""}),
        ('"user_creation_time": 1709287200000', {"user_creation_time": 1709287200000}),
    ],
)
def test_values_that_cannot_be_converted_exactly_are_kept_aside_as_exported(
    fields: str, kept: dict[str, Any]
) -> None:
    conformer = Conformer(EVENTS_SCHEMA)
    record = conform_line(with_fields(fields), conformer)
    assert record[EXTRA_FIELD] == kept
    for key in kept:
        assert record[key] is None
    assert [outcome for _, _, outcome in conformer.counts] == ["kept aside"]


def test_fields_the_schema_does_not_name_are_gathered_in_one_object() -> None:
    conformer = Conformer(EVENTS_SCHEMA)
    record = conform_line(
        with_fields(
            '"brand_new_field": {"nested": [1.10, "x"]}, "another": null, '
            '"additional_properties": "an export field of that name", "paying": "true"'
        ),
        conformer,
    )
    assert exact_json.dumps(record[EXTRA_FIELD]) == exact_json.dumps(
        {
            "reserved_names": {"additional_properties": "an export field of that name"},
            "brand_new_field": {"nested": [exact_json.ExactFloat("1.10"), "x"]},
            "another": None,
            "number_texts": {"/additional_properties/brand_new_field/nested/0": "1.10"},
        }
    )
    assert b'"nested":[1.10,"x"]' in exact_json.dumps(record)
    assert record["paying"] is True
    assert record["event_properties"] == {"a": 1}
    assert record["event_time"] == "2024-03-01T10:00:00.123456+00:00"
    assert set(record) - {EXTRA_FIELD} <= set(EVENTS_SCHEMA["properties"])


def test_counts_summary_and_log_lines_name_field_type_and_event_never_the_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    conformer = Conformer(EVENTS_SCHEMA)
    caplog.set_level(logging.INFO, logger="tap-amplitude")
    for _ in range(3):
        line = with_fields('"paying": "true", "location_lat": "secret-ish"').encode()
        conformer(normalise_record(parse_line(line)), line, "member x.json.gz", 7)
    line = with_fields('"extra_one": 5').encode()
    conformer(normalise_record(parse_line(line)), line, "member x.json.gz", 7)
    assert conformer.summary() == (
        "extra_one: 1 integer not in the schema, in additional_properties; "
        "location_lat: 3 string kept aside, in additional_properties; "
        "paying: 3 string converted to boolean"
    )
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3  # the first of each kind only
    assert all(m.startswith("member x.json.gz, line 7: ") for m in messages), messages
    assert not any("secret-ish" in m or UUID in m for m in messages)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "member x.json.gz, line 7: location_lat: a string that does not convert exactly to a "
        "number; kept as exported in additional_properties.location_lat, the field is null "
        "(first of its kind; counts at the end of the run)"
    ]


def test_an_integer_beyond_64_bits_is_named_so_in_its_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tap-amplitude")
    line = with_fields('"amplitude_id": 9223372036854775808').encode()
    Conformer(EVENTS_SCHEMA)(normalise_record(parse_line(line)), line, "member y.json.gz", 3)
    (message,) = [r.getMessage() for r in caplog.records]
    assert message.startswith(
        "member y.json.gz, line 3: amplitude_id: an integer beyond 64 bits; kept as exported"
    )


def test_raw_values_gives_each_top_level_value_as_written() -> None:
    line = b' { "a" : 1.10 , "b":[1, {"c": "d\\"e"}],"a\\u00e9":-0e0, "a": 2 } '
    assert raw_values(line) == {"a": "2", "b": '[1, {"c": "d\\"e"}]', "aé": "-0e0"}
    assert raw_values(b"[1, 2]") == {}
    assert raw_values(b'{"a": 1') == {}


def test_a_shape_seen_to_fit_still_has_its_times_and_integers_checked() -> None:
    """The remembered shapes (keys and types) skip only the type checks, never the values'."""
    conformer = Conformer(EVENTS_SCHEMA)
    fitting = with_fields('"amplitude_id": 7, "client_event_time": "2024-03-01 10:00:00.000000"')
    assert conform_line(fitting, conformer)["amplitude_id"] == 7
    same_shape = [
        ('"amplitude_id": 9223372036854775807', 9223372036854775807, None),
        ('"amplitude_id": 18446744073709551615', None, {"amplitude_id": 18446744073709551615}),
    ]
    for fields, kept, extra in same_shape:
        record = conform_line(
            with_fields(fields + ', "client_event_time": "2024-03-01 10:00:00.000000"'), conformer
        )
        assert record["amplitude_id"] == kept
        assert record.get(EXTRA_FIELD) == extra
    record = conform_line(
        with_fields('"amplitude_id": 7, "client_event_time": "2024-13-01 10:00:00.000000"'),
        conformer,
    )
    assert record["client_event_time"] is None
    assert record[EXTRA_FIELD] == {"client_event_time": "2024-13-01 10:00:00.000000"}


@pytest.mark.parametrize(
    "time",
    ["2024-W09-5T10:00:00.123456+00:00", "2024-03-01T10:00:00.12345+24:00"],
)
def test_times_of_the_canonical_length_in_another_form_take_the_checked_path(time: str) -> None:
    record = conform_line(with_fields(f'"processed_time": "{time}"'))
    assert record["processed_time"] is None
    assert record[EXTRA_FIELD] == {"processed_time": time}


def test_a_key_given_twice_is_found_at_any_depth_and_json_text_in_a_string_is_not_one() -> None:
    conformer = Conformer(EVENTS_SCHEMA)
    record = conform_line(
        with_fields(
            '"group_properties": {"company": {"size": 1, "size": 2.50}}, '
            '"event_properties": {"payload": "{\\"a\\":1}"}'
        ),
        conformer,
    )
    assert record["group_properties"] == {"company": {"size": 2.5}}
    assert record[EXTRA_FIELD] == {
        "duplicate_keys": {"/group_properties/company/size": [1]},
        "number_texts": {"/group_properties/company/size": "2.50"},
    }
    assert record["repairs"] == [
        "key repeated in one object: the last value kept, earlier ones in "
        "additional_properties.duplicate_keys"
    ]
    # A JSON text held in a string is a string: its keys are no keys of the record.
    clean = conform_line(
        with_fields('"event_properties": {"payload": "{\\"a\\":1,\\"a\\":2}", "n": {"m": {}}}'),
        conformer,
    )
    assert "repairs" not in clean and EXTRA_FIELD not in clean
    assert conformer.repeated_keys == 1


def test_a_whole_number_of_more_than_a_thousand_digits_in_a_string_field_keeps_its_text() -> None:
    record = conform_line(with_fields('"user_id": 1e1000, "device_id": 1e998'))
    assert record["user_id"] == "1e1000"  # its digits would be a 1,001-character id
    assert record["device_id"] == "1" + "0" * 998


def read_like_the_tap(line: bytes) -> dict[str, Any]:
    """One export line through export.py's steps: parse, a uuid when none is usable, times,
    conform."""
    record = parse_line(line)
    if not has_usable_uuid(record):
        ensure_uuid(record, line)
    return Conformer(EVENTS_SCHEMA)(normalise_record(record), line)


NO_UUID = b'{"event_type":"Play","event_time":"2024-03-01 10:00:00.000000","device_id":"d1",'


@pytest.mark.parametrize(
    "line",
    [
        # The tap adds one key (repairs: a number beyond a double) for the one key given twice.
        BASE.encode() + b', "x": 1e400, "user_id": "u2"}',
        # No uuid: the tap adds uuid and uuid_derived, for two keys given twice.
        NO_UUID + b'"user_id":"u1","user_id":"u2","a":1,"a":2}',
        # A uuid that is not one: uuid_derived and uuid_original added.
        b'{"uuid":"x","uuid":"y",' + NO_UUID[1:] + b'"user_id":"u1","user_id":"u2","a":1,"a":2}',
        # A byte-order mark (a repair) and a key given twice.
        b"\xef\xbb\xbf" + BASE.encode() + b', "user_id": "u2"}',
        # A `":` the line spells as \u0022: (the record written again spells it `\":`).
        BASE.encode() + b', "user_id": "u2", "t": "\\u0022:"}',
        # Whitespace before a colon: that key spells no `":`, and another is in a string.
        BASE.encode() + b', "user_id" : "u2", "t": "\\":"}',
        # An export field named like the tap's own (moved aside: two keys added).
        BASE.encode() + b', "repairs": 1, "user_id": "u2", "uuid": "' + UUID.encode() + b'"}',
    ],
)
def test_a_key_given_twice_is_found_whatever_the_tap_adds_to_the_record(line: bytes) -> None:
    record = read_like_the_tap(line)
    duplicates = record[EXTRA_FIELD]["duplicate_keys"]
    assert duplicates["/user_id"] == ["u1"], line
    assert record["user_id"] == "u2"
    assert exactjson.REPAIR_DUPLICATE_KEYS in record["repairs"]
    VALIDATOR.validate(record)


def test_a_line_without_a_key_given_twice_is_not_marked() -> None:
    for line in [
        BASE.encode() + b', "x": 1e400}',
        NO_UUID + b'"user_id":"u1","t":"\\u0022:","s":"a\\":b"}',
        BASE.encode() + b', "t" : "x", "o": {"k": {"j": 1}}}',
    ]:
        record = read_like_the_tap(line)
        assert "duplicate_keys" not in (record.get(EXTRA_FIELD) or {}), line
        assert exactjson.REPAIR_DUPLICATE_KEYS not in record.get("repairs", []), line


@pytest.mark.parametrize(
    ("fields", "texts"),
    [
        ('"location_lat": 47.10', {"/location_lat": "47.10"}),
        (
            '"event_properties": {"price": 1.10, "q": [1E+2, 2.5], '
            '"a/b": 12.345678901234567890123}',
            {
                "/event_properties/price": "1.10",
                "/event_properties/q/0": "1E+2",
                "/event_properties/a~1b": "12.345678901234567890123",
            },
        ),
        ('"sample_rate": "0.10"', {"/sample_rate": "0.10"}),  # converted from a string
        ('"location_lat": 47.5, "event_properties": {"n": 123456789012345678901234567890}', {}),
    ],
)
def test_the_text_of_each_number_a_double_would_change_is_kept_as_a_string(
    fields: str, texts: dict[str, str]
) -> None:
    """target-duckdb reads numbers as doubles (1.10 -> 1.1): the texts let a user recover the
    exact value from any target (issue 15)."""
    record = conform_line(with_fields(fields))
    assert (record.get(EXTRA_FIELD) or {}).get("number_texts", {}) == texts
