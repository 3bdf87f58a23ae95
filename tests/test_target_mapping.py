"""Amplitude record -> PostHog event: the exact mapping, pure (no server)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from target_posthog.event_keys import parse_time, session_uuid
from target_posthog.extras import with_extra_fields
from target_posthog.identity import alias_event, can_alias
from target_posthog.mapping import UnmappableError, map_record
from target_posthog.mapping_table import MAPPING_TABLE, mapping_table_markdown

WEB_RECORD = {
    "uuid": "5a397d03-17d5-4aa2-99f0-ac6dafc2d5d4",
    "event_type": "[Amplitude] Page Viewed",
    "event_time": "2024-02-29T23:59:56.190125+00:00",
    "user_id": "u_1",
    "device_id": "d-1",
    "platform": "Web",
    "os_name": "Chrome",
    "os_version": "121",
    "device_type": "Mac",
    "device_family": "Mac",
    "device_model": "Mac OS",
    "library": "amplitude-ts/2.7.4",
    "country": "Germany",
    "region": "Bavaria",
    "city": "München",
    "ip_address": "10.1.2.3",
    "language": "German",
    "session_id": 1709251196190,
    "event_id": 7,
    "amplitude_id": 4711,
    "$insert_id": "ins-1",
    "server_upload_time": "2024-03-01T00:00:02.079993+00:00",
    "plan": {},
    "dma": None,
    "event_properties": {
        "[Amplitude] Page URL": "https://shop.example/ü?x=1",
        "[Amplitude] Page Path": "/ü",
        "[Amplitude] Page Domain": "shop.example",
        "referrer": "https://www.google.com/",
    },
    "user_properties": {
        "plan": "pro",
        "initial_utm_source": "newsletter",
        "initial_utm_medium": "EMPTY",
    },
    "groups": {"company": ["Acme", "Other"]},
}


def test_web_page_view_maps_to_exact_posthog_event() -> None:
    (event,) = map_record(WEB_RECORD).events
    assert event == {
        "event": "$pageview",
        "distinct_id": "u_1",
        "timestamp": "2024-02-29T23:59:56.190125+00:00",
        "uuid": "5a397d03-17d5-4aa2-99f0-ac6dafc2d5d4",
        "properties": {
            "[Amplitude] Page URL": "https://shop.example/ü?x=1",
            "[Amplitude] Page Path": "/ü",
            "[Amplitude] Page Domain": "shop.example",
            "referrer": "https://www.google.com/",
            "$current_url": "https://shop.example/ü?x=1",
            "$host": "shop.example",
            "$pathname": "/ü",
            "$referrer": "https://www.google.com/",
            "$geoip_country_name": "Germany",
            "$geoip_city_name": "München",
            "$geoip_subdivision_1_name": "Bavaria",
            "$ip": "10.1.2.3",
            "$browser": "Chrome",
            "$browser_version": 121,
            "$os": "Mac OS X",
            "$device_type": "Desktop",
            "$amplitude_device_model": "Mac OS",
            "$lib": "amplitude-ts",
            "$lib_version": "2.7.4",
            "$amplitude_id": 4711,
            "$amplitude_user_id": "u_1",
            "$amplitude_platform": "Web",
            "$amplitude_device_family": "Mac",
            "$amplitude_language": "German",
            "$amplitude_event_id": 7,
            "$amplitude_insert_id": "ins-1",
            "$amplitude_server_upload_time": "2024-03-01T00:00:02.079993+00:00",
            "$amplitude_event_type": "[Amplitude] Page Viewed",
            "$device_id": "d-1",
            "$amplitude_device_id": "d-1",
            "$amplitude_session_id": 1709251196190,
            "$session_id": session_uuid(1709251196190, "d-1"),
            "$groups": {"company": "Acme"},
            "$amplitude_groups": {"company": ["Acme", "Other"]},
            "$geoip_disable": True,
            "analytics_source": "amplitude",
        },
    }


def test_person_properties_are_observed_not_set_on_the_event() -> None:
    """$set on events would be applied in ingestion order; the ledger sends the newest."""
    mapped = map_record(WEB_RECORD)
    assert mapped.person_key == "u_1"
    assert mapped.snapshot == {"plan": "pro"}  # user_properties: the user's whole snapshot
    assert mapped.person == {  # context: newest value each
        "$current_url": "https://shop.example/ü?x=1",
        "$pathname": "/ü",
        "$referrer": "https://www.google.com/",
        "$geoip_country_name": "Germany",
        "$geoip_city_name": "München",
        "$geoip_subdivision_1_name": "Bavaria",
        "$os": "Mac OS X",
        "$browser": "Chrome",
        "$browser_version": 121,
        "$device_type": "Desktop",
    }
    # First-touch values, earliest wins, under Amplitude's name (as Amplitude shows it, EMPTY
    # included) and PostHog's (EMPTY left out, as PostHog's importer does).
    assert mapped.initial == {
        "initial_utm_source": "newsletter",
        "$initial_utm_source": "newsletter",
        "initial_utm_medium": "EMPTY",
    }
    assert mapped.order == WEB_RECORD["event_time"] + WEB_RECORD["uuid"]


def test_mobile_os_is_the_os_not_a_browser() -> None:
    record = {
        **WEB_RECORD,
        "platform": "iOS",
        "os_name": "ipados",
        "os_version": "16.7.5",
        "device_model": "iPad13,1",
        "device_family": "Apple iPad",
        "device_type": "Apple iPad Air",
        "device_manufacturer": "Apple",
        "device_carrier": "AT&T",
        "event_type": "Song Played",
        "event_properties": {},
    }
    properties = map_record(record).events[0]["properties"]
    assert properties["$os"] == "iPadOS"
    assert properties["$os_version"] == "16.7.5"
    assert properties["$device_type"] == "Tablet"
    assert properties["$device_model"] == "iPad13,1"
    assert properties["$device_manufacturer"] == "Apple"
    assert properties["$network_carrier"] == "AT&T"
    assert properties["$amplitude_device_type"] == "Apple iPad Air"
    assert "$browser" not in properties
    assert "$amplitude_event_type" not in properties  # not renamed
    person = map_record(record).person
    assert person is not None
    assert person["$os_version"] == "16.7.5"


@pytest.mark.parametrize(
    ("platform", "device_type", "os_name", "expected"),
    [
        ("iOS", None, "iOS", "Mobile"),
        ("ios", None, None, "Mobile"),
        ("ANDROID", None, None, "Mobile"),
        ("", "iOS", None, "Mobile"),
        (None, "android", None, "Mobile"),
        ("macOS", None, None, "Desktop"),
        (None, "Windows", None, "Desktop"),
        (None, "linux", None, "Desktop"),
        ("Roku", "Roku Ultra", "roku", None),
    ],
)
def test_device_type_from_any_spelling_of_platform_or_device_type(
    platform: str | None, device_type: str | None, os_name: str | None, expected: str | None
) -> None:
    record = {
        **WEB_RECORD,
        "platform": platform,
        "device_type": device_type,
        "os_name": os_name,
        "device_family": None,
        "device_model": "X1",
    }
    mapped = map_record(record)
    assert mapped.events[0]["properties"].get("$device_type") == expected
    assert (mapped.person or {}).get("$device_type") == expected


@pytest.mark.parametrize("device_type", ["iOS", "ios", "Android", "WINDOWS", "Mac OS X"])
def test_web_device_type_in_any_case(device_type: str) -> None:
    properties = map_record({**WEB_RECORD, "device_type": device_type}).events[0]["properties"]
    expected = "Desktop" if device_type.lower() in ("windows", "mac os x") else "Mobile"
    assert properties["$device_type"] == expected


@pytest.mark.parametrize(
    "placeholder",
    [
        "undefined",
        "null",
        "NULL",
        "None",
        "nil",
        "anonymous",
        "Unknown",
        "n/a",
        "0",
        "-1",
        "NaN",
        "[object Object]",
        '"null"',
        "'undefined'",
        " none ",
        "",
        "   ",
        "00000000-0000-0000-0000-000000000000",
        "guest",
        "distinct_id",
        # Near misses of the same kinds: numbers equal to 0 or -1 in any spelling, a word in
        # brackets, case, nested quotes, whitespace, JavaScript object text, zero UUIDs.
        "0.0",
        "00",
        "-0",
        "+0",
        "0e0",
        "-1.0",
        "Infinity",
        "(null)",
        "<nil>",
        "[undefined]",
        "NULL ",
        "\tNone\n",
        "'undefined'",
        "\"'null'\"",
        "`nil`",
        "[object Object]",
        "[object object]",
        "[Object Object]",
        "[object Undefined]",
        "[object HTMLDivElement]",
        "00000000000000000000000000000000",
        "{00000000-0000-0000-0000-000000000000}",
        " 00000000-0000-0000-0000-000000000000 ",
        "#N/A",
        "NA",
        "TRUE",
        "Email",
        # Padded past the longest placeholder (fixed-width CHAR(n) columns).
        " " * 60,
        "\n" * 49,
        "null" + " " * 50,
        "00000000-0000-0000-0000-000000000000" + " " * 13,
        '"' + " " * 48 + 'undefined"',
    ],
)
def test_placeholder_user_id_counts_as_absent(placeholder: str) -> None:
    mapped = map_record({**WEB_RECORD, "user_id": placeholder})
    (event,) = mapped.events
    assert event["distinct_id"] == "d-1"  # the device's person, not one shared "undefined"
    assert mapped.user_id is None  # so no alias is formed with it
    assert mapped.person_key == "d-1"
    if placeholder.strip():
        assert event["properties"]["$amplitude_user_id"] == placeholder  # kept for tracing
    else:  # "" or blank: nothing to keep
        assert "$amplitude_user_id" not in event["properties"]
    assert can_alias("d-1", placeholder) is False


def test_placeholder_device_id_counts_as_absent() -> None:
    mapped = map_record({**WEB_RECORD, "device_id": "00000000-0000-0000-0000-000000000000"})
    properties = mapped.events[0]["properties"]
    assert mapped.device_id is None
    assert "$device_id" not in properties
    assert properties["$amplitude_device_id"] == "00000000-0000-0000-0000-000000000000"
    assert properties["$session_id"] == session_uuid(1709251196190, "u_1")
    assert map_record({**WEB_RECORD, "user_id": 0}).user_id is None  # a numeric placeholder


def test_real_ids_resembling_placeholders_are_kept() -> None:
    for real in (
        "nullable-7",
        "u_undefined",
        "00000000-0000-0000-0000-000000000001",
        "10",
        "007",
        "-2",
        "0x0",
        "null-user",
        "[1]",
        "(me)",
        "00000000000000000000000000000001",
        "anonymous-42",
    ):
        assert map_record({**WEB_RECORD, "user_id": real}).user_id == real


@pytest.mark.parametrize(
    ("fields", "os", "device_type"),
    [
        ({"platform": "ios"}, "iOS", "Mobile"),
        ({"platform": "ANDROID"}, "Android", "Mobile"),
        ({"device_type": "iOS"}, "iOS", "Mobile"),
        ({"device_type": "android", "platform": None}, "Android", "Mobile"),
        ({"device_type": "Linux", "platform": None}, None, "Desktop"),
        ({"platform": "Web", "device_type": "iOS"}, "iOS", "Mobile"),
        ({"platform": "web", "device_type": "WINDOWS"}, "Windows", "Desktop"),
    ],
)
def test_device_type_from_platform_or_device_type_in_any_case(
    fields: dict[str, Any], os: str | None, device_type: str
) -> None:
    """PostHog's importer sets $device_type only for a device_type spelled exactly iOS,
    Android, Windows or Linux; any spelling of platform or device_type counts here."""
    record = {"event_type": "x", "event_time": "2024-03-01 00:00:00", "user_id": "u1", **fields}
    mapped = map_record(record)
    properties = mapped.events[0]["properties"]
    assert properties.get("$os") == os
    assert properties["$device_type"] == device_type
    assert mapped.person is not None and mapped.person["$device_type"] == device_type


def test_os_and_browser_versions_reach_the_person() -> None:
    app = map_record({**WEB_RECORD, "platform": "iOS", "os_name": "ios", "os_version": "17.1"})
    assert app.person is not None and app.person["$os_version"] == "17.1"
    web = map_record(WEB_RECORD)
    assert web.person is not None and web.person["$browser_version"] == 121


@pytest.mark.parametrize("blank", ["", " ", "\t"])
def test_blank_ids_are_absent_and_not_kept(blank: str) -> None:
    """An empty id carries no information: not the distinct_id, not a raw property."""
    properties = map_record({**WEB_RECORD, "device_id": blank}).events[0]["properties"]
    assert "$amplitude_device_id" not in properties and "$device_id" not in properties
    mapped = map_record({**WEB_RECORD, "user_id": blank, "device_id": "d-1"})
    assert mapped.user_id is None and mapped.events[0]["distinct_id"] == "d-1"
    assert "$amplitude_user_id" not in mapped.events[0]["properties"]
    with pytest.raises(UnmappableError, match="neither user_id nor device_id"):
        map_record({**WEB_RECORD, "user_id": blank, "device_id": blank})


def test_numeric_and_string_ids_are_one_posthog_id() -> None:
    """user_id 42 and device_id "42" are the same PostHog distinct_id: no alias between them."""
    mapped = map_record({**WEB_RECORD, "user_id": 42, "device_id": "42"})
    assert mapped.user_id == mapped.device_id == "42"
    assert can_alias(mapped.device_id, mapped.user_id) is False
    assert map_record({**WEB_RECORD, "user_id": 42.0}).user_id == "42"


def test_person_operations_inside_properties_are_renamed_not_applied() -> None:
    """`$set`/`$set_once`/`$unset` inside the export's properties would be person updates in
    PostHog (overwriting newer values, and live ones under existing_properties=keep): kept
    visibly under `$amplitude_$set`..., so only the target's own updates change a person."""
    record = {
        **WEB_RECORD,
        "event_properties": {
            "$set": {"plan": "old"},
            "$set_once": {"first": 1},
            "$unset": ["plan"],
            "item": "x",
        },
        "user_properties": {"$set": {"plan": "old"}, "$unset": ["x"], "plan": "pro"},
    }
    mapped = map_record(record)
    properties = mapped.events[0]["properties"]
    assert not {"$set", "$set_once", "$unset"} & properties.keys()
    assert properties["$amplitude_$set"] == {"plan": "old"}
    assert properties["$amplitude_$set_once"] == {"first": 1}
    assert properties["$amplitude_$unset"] == ["plan"]
    assert properties["item"] == "x"
    assert mapped.snapshot is not None
    assert not {"$set", "$set_once", "$unset"} & mapped.snapshot.keys()
    assert mapped.snapshot["$amplitude_$set"] == {"plan": "old"}
    assert mapped.snapshot["plan"] == "pro"


@pytest.mark.parametrize("name", ["$create_alias", "$merge_dangerously"])
def test_export_events_named_as_merges_are_renamed(name: str) -> None:
    """PostHog merges two persons on these names: only the target's own aliases may."""
    record = {**WEB_RECORD, "event_type": name, "event_properties": {"alias": "someone-else"}}
    event = map_record(record).events[0]
    assert event["event"] == "$amplitude_" + name
    assert event["properties"]["$amplitude_event_type"] == name
    assert event["properties"]["alias"] == "someone-else"


def test_record_whose_ids_are_all_placeholders_is_refused_naming_them() -> None:
    with pytest.raises(UnmappableError) as refused:
        map_record({**WEB_RECORD, "user_id": "undefined", "device_id": "null"})
    assert refused.value.reason == (
        "no usable user_id or device_id: user_id 'undefined', device_id 'null': "
        "placeholders that name nobody"
    )


def test_anonymous_event_uses_device_id() -> None:
    mapped = map_record({**WEB_RECORD, "user_id": None})
    assert mapped.events[0]["distinct_id"] == "d-1"
    assert mapped.user_id is None


def test_amplitude_identify_becomes_a_person_update_not_a_merge() -> None:
    mapped = map_record({**WEB_RECORD, "event_type": "$identify"})
    (event,) = mapped.events
    assert event["event"] == "$set"
    assert "$set" not in event["properties"]  # the ledger sends the newest values instead
    assert mapped.snapshot is not None
    assert mapped.snapshot["plan"] == "pro"
    assert "$anon_distinct_id" not in event["properties"]


def test_amplitude_group_identify_becomes_group_updates() -> None:
    record = {
        **WEB_RECORD,
        "event_type": "$groupidentify",
        "group_properties": {"company": {"Acme": {"seats": 5}, "Beta": {"seats": 9}}},
    }
    mapped = map_record(record)
    events = mapped.events
    assert [
        (
            e["event"],
            e["properties"]["$group_type"],
            e["properties"]["$group_key"],
            e["properties"]["$group_set"],
            e["properties"]["$amplitude_group_properties"],
        )
        for e in events
    ] == [
        ("$groupidentify", "company", "Acme", {}, {"seats": 5}),
        ("$groupidentify", "company", "Beta", {}, {"seats": 9}),
    ]
    assert mapped.groups == [("company", "Acme", {"seats": 5}), ("company", "Beta", {"seats": 9})]
    assert len({e["uuid"] for e in events}) == 2
    assert events == map_record(record).events  # deterministic uuids
    anonymous = {
        **record,
        "user_id": None,
        "device_id": None,
        "group_properties": {"company": {"Acme": {}}},
    }
    (update,) = map_record(anonymous).events
    # No person: kept personless (PostHog would make "$company_Acme" a person, and drops a
    # personless $groupidentify), renamed, its group in $groups.
    assert update["event"] == "$amplitude_$groupidentify"
    assert update["distinct_id"] == "$company_Acme"
    assert update["properties"]["$process_person_profile"] is False
    assert update["properties"]["$groups"] == {"company": "Acme"}
    assert update["properties"]["$amplitude_event_type"] == "$groupidentify"
    assert update["uuid"] == WEB_RECORD["uuid"]


def test_invalid_uuid_is_replaced_deterministically() -> None:
    record = {**WEB_RECORD, "uuid": "not-a-uuid"}
    first = map_record(record).events[0]
    assert first["uuid"] == map_record(dict(record)).events[0]["uuid"]
    assert uuid.UUID(first["uuid"]).version == 5
    assert first["properties"]["$amplitude_uuid"] == "not-a-uuid"
    other_insert = map_record({**record, "$insert_id": "ins-2"}).events[0]
    assert other_insert["uuid"] != first["uuid"]
    no_key = {**record, "$insert_id": None}
    assert map_record(no_key).events[0]["uuid"] == map_record(dict(no_key)).events[0]["uuid"]
    assert (
        map_record({**WEB_RECORD, "uuid": WEB_RECORD["uuid"].upper()}).events[0]["uuid"]
        == (WEB_RECORD["uuid"])
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"event_type": None}, "no event_type"),
        ({"event_type": "  "}, "no event_type"),
        ({"user_id": None, "device_id": ""}, "neither user_id nor device_id"),
        (
            {"event_time": "yesterday", "client_event_time": None, "server_received_time": None},
            "no time: event_time, client_event_time, server_received_time all missing or not times",
        ),
        (
            {"event_time": None, "client_event_time": "", "server_received_time": "2024:03:01"},
            "no time: event_time, client_event_time, server_received_time all missing or not times",
        ),
        ({"event_properties": "oops"}, "event_properties is not an object"),
        ({"user_properties": [1]}, "user_properties is not an object"),
        ({"groups": "x"}, "groups is not an object"),
    ],
)
def test_records_that_must_not_be_sent_are_refused_with_a_reason(
    change: dict[str, object], reason: str
) -> None:
    with pytest.raises(UnmappableError) as refused:
        map_record({**WEB_RECORD, **change})
    assert refused.value.reason == reason


def test_raw_amplitude_time_form_and_offsets_are_normalised_to_utc() -> None:
    assert parse_time("2024-03-01 10:15:00.123456") == "2024-03-01T10:15:00.123456+00:00"
    assert parse_time("2024-03-01 10:15:00") == "2024-03-01T10:15:00.000000+00:00"
    assert parse_time("2024-03-01T12:15:00+02:00") == "2024-03-01T10:15:00.000000+00:00"
    assert parse_time("2024-03-01T10:15:00.123456+00:00") == "2024-03-01T10:15:00.123456+00:00"
    raw = map_record({**WEB_RECORD, "event_time": "2024-02-29 23:59:56.190125"}).events[0]
    assert raw["timestamp"] == "2024-02-29T23:59:56.190125+00:00"


def test_session_id_becomes_a_uuidv7_at_the_session_start() -> None:
    value = uuid.UUID(session_uuid(1709251196190, "d-1"))
    assert value.version == 7
    assert value.int >> 80 == 1709251196190
    assert session_uuid(1709251196190, "d-2") != str(value)
    no_session = map_record({**WEB_RECORD, "session_id": -1}).events[0]["properties"]
    assert "$session_id" not in no_session
    assert no_session["$amplitude_session_id"] == -1  # Amplitude's "no session", as received


def test_alias_is_deterministic_and_ties_device_into_user() -> None:
    alias = alias_event("d-1", "u_1", "2024-03-01T00:00:00.000000+00:00")
    assert alias["event"] == "$create_alias"
    assert alias["distinct_id"] == "u_1"
    assert alias["properties"]["alias"] == "d-1"
    assert alias == alias_event("d-1", "u_1", "2024-03-01T00:00:00.000000+00:00")
    assert alias["uuid"] != alias_event("d-2", "u_1", alias["timestamp"])["uuid"]


@pytest.mark.parametrize(
    ("device", "user", "ok"),
    [
        ("d-1", "u_1", True),
        ("same", "same", False),
        ("null", "u_1", False),
        ("d-1", "Anonymous", False),
        ("0", "u_1", False),
        ("d-1", "unknown", False),
        ("00000000-0000-0000-0000-000000000000", "u_1", False),
    ],
)
def test_pairs_posthog_would_refuse_are_not_aliased(device: str, user: str, ok: bool) -> None:
    assert can_alias(device, user) is ok


def test_readme_mapping_table_is_rendered_from_the_rules() -> None:
    table = mapping_table_markdown()
    assert table.count("\n") == len(MAPPING_TABLE) + 1
    assert "$create_alias" in table


def test_readme_holds_the_current_mapping_table() -> None:
    readme = (Path(__file__).parent.parent / "target-posthog" / "README.md").read_text()
    assert mapping_table_markdown() in readme


@pytest.mark.parametrize(
    "session_id",
    ["abc", 1.5, 0, -1, 2**70, "1709251196190", [1709251196190], {"id": 1}, True, " "],
)
def test_a_session_id_that_is_no_session_start_is_kept_as_received(session_id: object) -> None:
    """A session id tap-amplitude kept aside (not a 64-bit integer: back in its field through
    `additional_properties`) or another tap's reaches PostHog unchanged; only an epoch-ms
    start also becomes $session_id."""
    tapped = {**WEB_RECORD, "session_id": None, "additional_properties": {"session_id": session_id}}
    properties = map_record(with_extra_fields(tapped)).events[0]["properties"]
    assert properties["$amplitude_session_id"] == session_id
    assert "$session_id" not in properties


@pytest.mark.parametrize(
    ("fields", "kept"),
    [
        ({"library": 5}, {"$amplitude_library": 5}),
        ({"library": {"name": "x"}}, {"$amplitude_library": {"name": "x"}}),
        ({"os_name": 0}, {"$amplitude_os_name": 0}),
        ({"device_type": 12}, {"$amplitude_device_type": 12}),
        (
            {"platform": "iOS", "device_manufacturer": "Apple", "device_brand": "iPhone"},
            {"$device_manufacturer": "Apple", "$amplitude_device_brand": "iPhone"},
        ),
        ({"platform": "iOS", "os_name": 7}, {"$amplitude_os_name": 7}),
        ({"platform": "iOS", "device_model": 0, "device_carrier": False},
         {"$amplitude_device_model": 0, "$amplitude_device_carrier": False}),
    ],
)  # fmt: skip
def test_a_context_field_no_posthog_property_takes_is_kept_as_received(
    fields: dict[str, object], kept: dict[str, object]
) -> None:
    properties = map_record({**WEB_RECORD, **fields}).events[0]["properties"]
    assert {name: properties.get(name) for name in kept} == kept


def test_every_field_tap_amplitude_adds_reaches_posthog_as_the_mapping_table_says() -> None:
    """tap-amplitude's bookkeeping (exactjson.TAP_FIELDS) is how a user proves in PostHog
    what was repaired, derived or converted: each arrives as `$amplitude_<name>`, unchanged,
    and the README's table (rendered from MAPPING_TABLE) names each."""
    from tap_amplitude.conform import Conformer
    from tap_amplitude.exactjson import EXTRA_FIELD, TAP_FIELDS
    from tap_amplitude.keys import ensure_uuid
    from tap_amplitude.lines import parse_line
    from tap_amplitude.schema import EVENTS_SCHEMA
    from tap_amplitude.times import normalise_record

    line = (
        b'{"uuid":"not-a-uuid","event_type":"Paid","event_time":"2024-03-01 05:10:00.000000",'
        b'"user_id":"u0","user_id":"u1","device_id":"d1","amplitude_id":"4711","repairs":"mine",'
        b'"event_properties":{"n":1.10,"b":1e400},"new_field":7}'
    )
    tapped = parse_line(line)
    ensure_uuid(tapped, line)
    tapped = Conformer(EVENTS_SCHEMA)(normalise_record(tapped), line)
    extra = tapped[EXTRA_FIELD]
    properties = map_record(with_extra_fields(tapped)).events[0]["properties"]
    table = mapping_table_markdown()
    assert properties["n"] == 1.10 and "$amplitude_number_texts" not in properties
    assert "`number_texts`" in table and "is not sent" in table
    for name in sorted(TAP_FIELDS - {EXTRA_FIELD, "number_texts"}):
        sent = f"$amplitude_{name}"
        assert properties[sent] == tapped.get(name, extra.get(name)), name
        assert f"`{sent}`" in table and f"`{name}`" in table, name
    assert properties["$amplitude_new_field"] == 7 and properties["$amplitude_id"] == 4711
    assert "additional_properties" in table


@pytest.mark.parametrize(
    ("version", "sent"),
    [("121", 121), ("007", "007"), ("\u00b2", "\u00b2"), ("121.0", "121.0"), (121, 121)],
)
def test_a_browser_version_becomes_a_number_only_when_that_is_the_same_text(
    version: object, sent: object
) -> None:
    """ "²" is a digit to str.isdigit but not to int (it crashed the target); "007" is no 7."""
    properties = map_record({**WEB_RECORD, "os_version": version}).events[0]["properties"]
    assert properties["$browser_version"] == sent
    assert type(properties["$browser_version"]) is type(sent)
