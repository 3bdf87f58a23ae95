"""Values the mapping must not lose or let PostHog change: event properties named like the
export's own mapped fields, event times PostHog would move, ids PostHog would cut or merge,
and the dead-letter summary (issue 11, through the real target CLI and the PostHog stand-in)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.target_support import (
    SCHEMA,
    is_export_event,
    posthog,
    record,
    run_target,
    target_config,
)
from tests.testbed.posthog import PostHogStandIn

__all__ = ["posthog"]  # a fixture, used by name

pytestmark = pytest.mark.timeout(120)

BASE = {
    "uuid": "0b5f3c1e-7d2a-4c8b-9e6f-1a2b3c4d5e61",
    "event_type": "Viewed",
    "event_time": "2024-03-01T05:10:00.000000+00:00",
    "client_event_time": "2024-03-01T05:09:58.000000+00:00",
    "server_received_time": "2024-03-01T05:10:01.000000+00:00",
    "device_id": "dev-1",
    "user_id": "user-1",
}


def raw_export_events(posthog: PostHogStandIn) -> list[bytes]:
    return [raw for raw in posthog.raw_events if is_export_event(orjson.loads(raw))]


def test_event_properties_never_overwrite_the_exports_fields_nor_are_overwritten(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    posthog.keep_raw_events = lambda raw: True
    clashing = {
        "[Amplitude] Page URL": "https://a.example/x",
        "$current_url": "https://b.example/y",
        "$lib": "segment",
        "$ip": "2.2.2.2",
        "$geoip_country_name": "France",
        "$session_id": "sess-from-props",
        "$browser": "Firefox",
        "analytics_source": "web",
        "$amplitude_session_id": "p",
        "$amplitude_user_id": "spoof",
        "$amplitude_foo": "ep",
        "$amplitude_clashing_event_properties": "mine",
        "same": 1,
        "$ip_copy": "1.1.1.1",
    }
    value = BASE | {
        "platform": "Web",
        "library": "amplitude-ts/2.0",
        "ip_address": "1.1.1.1",
        "os_name": "Chrome",
        "country": "Germany",
        "session_id": 1709269200000,
        "foo": "top",
        "event_properties": clashing,
    }
    run = run_target(target_config(tmp_path, posthog), [SCHEMA, record(value)], tmp_path, posthog)
    assert run.returncode == 0, run.stderr
    (raw,) = raw_export_events(posthog)
    properties = orjson.loads(raw)["properties"]
    session = properties["$session_id"]
    assert properties == {
        # the export's own fields, each under its name
        "$amplitude_user_id": "user-1",
        "$amplitude_foo": "top",
        "$amplitude_platform": "Web",
        "$amplitude_client_event_time": "2024-03-01T05:09:58.000000+00:00",
        "$amplitude_server_received_time": "2024-03-01T05:10:01.000000+00:00",
        "[Amplitude] Page URL": "https://a.example/x",
        "$current_url": "https://a.example/x",
        "$lib": "amplitude-ts",
        "$lib_version": "2.0",
        "$ip": "1.1.1.1",
        "$geoip_country_name": "Germany",
        "$session_id": session,
        "$browser": "Chrome",
        "analytics_source": "amplitude",
        "$amplitude_session_id": 1709269200000,
        "same": 1,
        "$ip_copy": "1.1.1.1",
        "$device_id": "dev-1",
        "$amplitude_device_id": "dev-1",
        "$geoip_disable": True,
        # the event properties those names took, each kept with its value
        "$amplitude_clashing_event_properties": {
            "$current_url": "https://b.example/y",
            "$lib": "segment",
            "$ip": "2.2.2.2",
            "$geoip_country_name": "France",
            "$session_id": "sess-from-props",
            "$browser": "Firefox",
            "analytics_source": "web",
            "$amplitude_session_id": "p",
            "$amplitude_user_id": "spoof",
            "$amplitude_foo": "ep",
            "$amplitude_clashing_event_properties": "mine",
        },
    }
    assert session != "sess-from-props"
    summary = run.stderr.splitlines()[-1]
    assert (
        ", 1 events whose event_properties named a property the export's own fields map to "
        "(kept in $amplitude_clashing_event_properties)"
    ) in summary
    said = [line.split(" | ")[-1] for line in run.stderr.splitlines() if "one of the" in line]
    assert said == [
        f"events record uuid {BASE['uuid']}: one of the events whose event_properties named a "
        "property the export's own fields map to (kept in $amplitude_clashing_event_properties); "
        "further ones are counted in the summary"
    ]
    assert "b.example" not in run.stderr and "spoof" not in run.stderr
