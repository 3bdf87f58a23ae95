"""Amplitude record -> PostHog event: the exact mapping, pure (no server)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from target_posthog.event_keys import parse_time, session_uuid
from target_posthog.identity import alias_event, can_alias
from target_posthog.mapping import (
    MAPPING_TABLE,
    UnmappableError,
    map_record,
    mapping_table_markdown,
)

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
            "$set": {
                "plan": "pro",
                "initial_utm_source": "newsletter",
                "initial_utm_medium": "EMPTY",
                "$current_url": "https://shop.example/ü?x=1",
                "$pathname": "/ü",
                "$referrer": "https://www.google.com/",
                "$geoip_country_name": "Germany",
                "$geoip_city_name": "München",
                "$geoip_subdivision_1_name": "Bavaria",
                "$os": "Mac OS X",
                "$browser": "Chrome",
                "$device_type": "Desktop",
            },
            "$set_once": {"$initial_utm_source": "newsletter"},
            "$geoip_disable": True,
            "analytics_source": "amplitude",
        },
    }


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


def test_anonymous_event_uses_device_id() -> None:
    mapped = map_record({**WEB_RECORD, "user_id": None})
    assert mapped.events[0]["distinct_id"] == "d-1"
    assert mapped.user_id is None


def test_amplitude_identify_becomes_a_person_update_not_a_merge() -> None:
    (event,) = map_record({**WEB_RECORD, "event_type": "$identify"}).events
    assert event["event"] == "$set"
    assert event["properties"]["$set"]["plan"] == "pro"
    assert "$anon_distinct_id" not in event["properties"]


def test_amplitude_group_identify_becomes_group_updates() -> None:
    record = {
        **WEB_RECORD,
        "event_type": "$groupidentify",
        "group_properties": {"company": {"Acme": {"seats": 5}, "Beta": {"seats": 9}}},
    }
    events = map_record(record).events
    assert [
        (
            e["event"],
            e["properties"]["$group_type"],
            e["properties"]["$group_key"],
            e["properties"]["$group_set"],
        )
        for e in events
    ] == [
        ("$groupidentify", "company", "Acme", {"seats": 5}),
        ("$groupidentify", "company", "Beta", {"seats": 9}),
    ]
    assert len({e["uuid"] for e in events}) == 2
    assert events == map_record(record).events  # deterministic uuids
    anonymous = {
        **record,
        "user_id": None,
        "device_id": None,
        "group_properties": {"company": {"Acme": {}}},
    }
    (update,) = map_record(anonymous).events
    assert update["distinct_id"] == "$company_Acme"
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
        ({"event_time": "yesterday"}, "event_time missing or not a time"),
        ({"event_time": None}, "event_time missing or not a time"),
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
    assert "$amplitude_session_id" not in no_session


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
