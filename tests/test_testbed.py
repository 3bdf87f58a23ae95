"""Contract tests of the shared test bed: the generator, the export store and both stand-ins."""

from __future__ import annotations

import base64
import gzip
import http.client
import io
import re
import threading
import uuid
import zipfile
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.testbed.amplitude import AmplitudeStandIn
from tests.testbed.faults import Fault
from tests.testbed.generator import ExportSpec, ExportStore, generate_events, main
from tests.testbed.posthog import PostHogStandIn

pytestmark = pytest.mark.timeout(60)

START = datetime(2024, 3, 1, tzinfo=UTC)
AUTH = "Basic " + base64.b64encode(b"amp-test-key:amp-test-secret").decode()


def hour(n: int) -> datetime:
    return START + timedelta(hours=n)


def param(value: datetime) -> str:
    return value.strftime("%Y%m%dT%H")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ExportStore:
    spec = ExportSpec(start=START, hours=6, events=1_200, seed=11)
    return ExportStore.build(tmp_path_factory.mktemp("export"), spec)


@pytest.fixture
def amplitude(store: ExportStore) -> Iterator[AmplitudeStandIn]:
    with AmplitudeStandIn(store) as server:
        yield server


@pytest.fixture
def posthog() -> Iterator[PostHogStandIn]:
    with PostHogStandIn() as server:
        yield server


def get(url: str, path: str, auth: str | None = AUTH) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": auth} if auth else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def export(url: str, start: datetime, end: datetime, auth: str | None = AUTH) -> tuple[int, bytes]:
    return get(url, f"/api/2/export?start={param(start)}&end={param(end)}", auth)


def post(url: str, payload: Any, gzip_body: bool = False, header: bool = True) -> int:
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    headers = {"Content-Type": "application/json"}
    if gzip_body:
        body = gzip.compress(body)
        if header:
            headers["Content-Encoding"] = "gzip"
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("POST", "/batch/", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def capture_event(n: int, **overrides: Any) -> dict[str, Any]:
    event = {
        "event": "Button Clicked",
        "distinct_id": f"user-{n}",
        "properties": {"n": n, "city": "Zürich"},
        "timestamp": "2024-03-01T12:00:00+00:00",
        "uuid": str(uuid.UUID(int=n + 1, version=4)),
    }
    event.update(overrides)
    return event


def batch(*events: dict[str, Any], api_key: str = "phc_test_key") -> dict[str, Any]:
    return {"api_key": api_key, "historical_migration": True, "batch": list(events)}


# ---- generator and store ---------------------------------------------------------------------


def test_generator_is_deterministic_and_realistic() -> None:
    spec = ExportSpec(start=START, hours=24, events=3_000, seed=3)
    events = list(generate_events(spec))
    assert events == list(generate_events(spec))
    assert len(events) == 3_000
    assert len({e["uuid"] for e in events}) == 3_000
    assert all(uuid.UUID(e["uuid"]).version == 4 for e in events)
    upload_hours = Counter(e["server_upload_time"][:13] for e in events)
    assert len(upload_hours) == 24  # every hour has data, unevenly
    assert max(upload_hours.values()) > 2 * min(upload_hours.values())
    for event in events:
        assert event["event_time"] <= event["server_upload_time"]
    types = Counter(e["event_type"] for e in events)
    for expected in ("[Amplitude] Page Viewed", "$identify", "session_start", "Order Completed"):
        assert types[expected] > 0, expected
    # Anonymous-then-login: a device seen without user_id, later with one.
    anonymous = {e["device_id"] for e in events if e["user_id"] is None}
    identified = {e["device_id"] for e in events if e["user_id"] is not None}
    assert anonymous & identified
    devices_per_user: dict[str, set[str]] = {}
    users_per_device: dict[str, set[str]] = {}
    for e in events:
        if e["user_id"]:
            devices_per_user.setdefault(e["user_id"], set()).add(e["device_id"])
            users_per_device.setdefault(e["device_id"], set()).add(e["user_id"])
    assert any(len(d) > 1 for d in devices_per_user.values())
    assert any(len(u) > 1 for u in users_per_device.values())  # a shared device
    assert any(not e["user_id"].isascii() for e in events if e["user_id"])
    page = next(e for e in events if e["event_type"] == "[Amplitude] Page Viewed")
    assert page["event_properties"]["[Amplitude] Page URL"].startswith("https://")
    revenue = next(e for e in events if e["event_type"] == "Order Completed")
    assert {"revenue", "price", "quantity", "productId"} <= revenue["event_properties"].keys()


def test_sparse_and_invalid_specs() -> None:
    sparse = list(generate_events(ExportSpec(start=START, hours=100, events=5)))
    assert len(sparse) == 5
    assert len({e["server_upload_time"][:13] for e in sparse}) == 5
    spoiled = list(
        generate_events(ExportSpec(start=START, hours=2, events=400, invalid_fraction=0.2))
    )
    bad = [
        e
        for e in spoiled
        if not e.get("event_type")
        or (e["user_id"] is None and e["device_id"] is None)
        or not isinstance(e["event_properties"], dict)
        or not e["event_time"][:4].isdigit()
        or e["event_time"][5:7] == "13"
    ]
    assert 40 <= len(bad) <= 130


def test_store_members_zip_and_reading(tmp_path: Path) -> None:
    spec = ExportSpec(start=START, hours=3, events=900, seed=5)
    store = ExportStore.build(tmp_path / "export", spec, max_lines_per_member=200)
    assert store.hours() == [hour(0), hour(1), hour(2)]
    assert store.event_count == 900
    names = sorted(p.name for p in (tmp_path / "export").iterdir())
    assert "187520_2024-03-01_0#0.json.gz" in names
    assert "187520_2024-03-01_0#1.json.gz" in names  # big hours are split
    assert store.uuids() == {e["uuid"] for e in store.iter_events()}
    in_hour_1 = sum(m.events for m in store.members(hour(1), hour(1)))
    assert sum(1 for _ in store.iter_events(hour(1), hour(1))) == in_hour_1
    size = store.write_zip(tmp_path / "x.zip", hour(0), hour(1))
    assert size == store.export_bytes(hour(0), hour(1)) == (tmp_path / "x.zip").stat().st_size
    with zipfile.ZipFile(tmp_path / "x.zip") as archive:
        members = archive.namelist()
        assert all(n.startswith("187520/187520_2024-03-01_") for n in members)
        assert all(i.compress_type == zipfile.ZIP_STORED for i in archive.infolist())
        lines = gzip.decompress(archive.read(members[0])).splitlines()
        assert orjson.loads(lines[0])["uuid"]
    store.add(ExportSpec(start=hour(5), hours=1, events=10, seed=5))
    assert store.hours()[-1] == hour(5)
    assert store.event_count == 910
    assert len(store.uuids()) == 910
    reopened = ExportStore.open(tmp_path / "export")
    assert reopened.event_count == 910
    store.corrupt_member(hour(2))
    with pytest.raises(Exception):  # noqa: B017 (any decoding error will do)
        list(store.iter_events(hour(2), hour(2)))


def test_cli_writes_members_and_zip(tmp_path: Path) -> None:
    argv = ["--events", "50", "--hours", "2", "--start", "2024-01-01T00", "--seed", "1"]
    assert main([*argv, "--out", str(tmp_path / "out"), "--zip", str(tmp_path / "e.zip")]) == 0
    assert len(list((tmp_path / "out").glob("187520_2024-01-01_*#0.json.gz"))) == 2
    assert zipfile.ZipFile(tmp_path / "e.zip").testzip() is None


# ---- Amplitude stand-in ----------------------------------------------------------------------


def test_export_auth_range_and_inclusive_hours(
    amplitude: AmplitudeStandIn, store: ExportStore
) -> None:
    assert export(amplitude.url, hour(0), hour(1), auth=None)[0] == 401
    bad = "Basic " + base64.b64encode(b"amp-test-key:wrong").decode()
    assert export(amplitude.url, hour(0), hour(1), auth=bad)[0] == 401
    assert get(amplitude.url, "/api/2/export?start=2024-03-01&end=20240301T01")[0] == 400
    assert export(amplitude.url, hour(0), hour(0) + timedelta(days=366))[0] == 400
    assert export(amplitude.url, hour(-48), hour(-1))[0] == 404

    status, body = export(amplitude.url, hour(1), hour(2))
    assert status == 200
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        hours_served = {name.split("_")[-1].split("#")[0] for name in archive.namelist()}
        assert hours_served == {"1", "2"}  # both ends inclusive
        count = sum(
            len(gzip.decompress(archive.read(name)).splitlines()) for name in archive.namelist()
        )
    assert count == sum(1 for _ in store.iter_events(hour(1), hour(2)))
    log = amplitude.requests
    assert [r.status for r in log] == [401, 401, 400, 400, 404, 200]
    assert log[-1].start == hour(1) and log[-1].end == hour(2)
    assert log[-1].bytes_sent == len(body)


def test_export_size_thresholds(amplitude: AmplitudeStandIn, store: ExportStore) -> None:
    one_hour = store.export_bytes(hour(0), hour(0))
    amplitude.max_export_bytes = one_hour
    assert export(amplitude.url, hour(0), hour(1))[0] == 400
    assert export(amplitude.url, hour(0), hour(0))[0] == 200
    amplitude.max_export_bytes = None
    amplitude.timeout_export_bytes = one_hour
    assert export(amplitude.url, hour(0), hour(1))[0] == 504
    amplitude.timeout_export_bytes = None
    amplitude.always_fail_hours = {hour(3)}
    assert export(amplitude.url, hour(2), hour(4))[0] == 504
    assert export(amplitude.url, hour(4), hour(5))[0] == 200


def test_export_faults_fire_once_then_clear(amplitude: AmplitudeStandIn) -> None:
    amplitude.inject(Fault.status(429, retry_after=1))
    amplitude.inject(Fault.drop())
    amplitude.inject(Fault.truncate())
    host, port = amplitude.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", f"/api/2/export?start={param(hour(0))}&end={param(hour(1))}")
    response = conn.getresponse()
    assert (response.status, response.getheader("Retry-After")) == (429, "1")
    response.read()
    conn.close()
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        export(amplitude.url, hour(0), hour(1))
    with pytest.raises(http.client.IncompleteRead):
        export(amplitude.url, hour(0), hour(1))
    status, body = export(amplitude.url, hour(0), hour(1))
    assert status == 200 and zipfile.ZipFile(io.BytesIO(body)).testzip() is None
    faults = [r.fault.kind if r.fault else None for r in amplitude.requests]
    assert faults == ["status", "drop", "truncate", None]


# ---- PostHog stand-in ------------------------------------------------------------------------


def test_capture_accepts_plain_and_gzip(posthog: PostHogStandIn) -> None:
    assert post(posthog.url, batch(capture_event(1), capture_event(2))) == 200
    assert post(posthog.url, batch(capture_event(3)), gzip_body=True) == 200
    assert post(posthog.url, batch(capture_event(4)), gzip_body=True, header=False) == 200
    assert [r.gzip for r in posthog.requests] == [False, True, True]
    assert all(r.historical_migration for r in posthog.requests)
    assert posthog.event_count == 4
    assert [e["properties"]["n"] for e in posthog.events] == [1, 2, 3, 4]
    assert posthog.requests[0].uuids == (capture_event(1)["uuid"], capture_event(2)["uuid"])


def test_capture_rejections_store_nothing(posthog: PostHogStandIn) -> None:
    good = capture_event(1)
    assert post(posthog.url, batch(good, api_key="wrong")) == 401
    assert post(posthog.url, {"batch": [good]}) == 401
    assert post(posthog.url, b"{not json") == 400
    assert post(posthog.url, batch()) == 400
    assert post(posthog.url, batch(good, capture_event(2, event=""))) == 400
    assert post(posthog.url, batch(good, capture_event(2, distinct_id=None))) == 400
    assert post(posthog.url, batch(good, capture_event(2, uuid="bad-uuid"))) == 400
    huge = capture_event(2, properties={"blob": "x" * 1_100_000})
    assert post(posthog.url, batch(good, huge)) == 400
    posthog.max_body_bytes = 1_000
    assert post(posthog.url, batch(*[capture_event(n) for n in range(20)])) == 413
    posthog.max_body_bytes = 20 * 1024 * 1024
    posthog.reject_if(lambda e: e["distinct_id"] == "user-7")
    assert post(posthog.url, batch(good, capture_event(7))) == 400
    assert posthog.event_count == 0 and posthog.events == []
    assert not any(r.stored for r in posthog.requests)


def test_capture_faults_and_lost_ack(posthog: PostHogStandIn) -> None:
    posthog.inject(Fault.status(503))
    posthog.inject(Fault.drop())
    posthog.inject(Fault.lose_ack())
    assert post(posthog.url, batch(capture_event(1))) == 503
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        post(posthog.url, batch(capture_event(1)))
    assert posthog.event_count == 0
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        post(posthog.url, batch(capture_event(1)))
    assert posthog.event_count == 1  # stored, but the answer was lost
    assert post(posthog.url, batch(capture_event(1))) == 200  # the client's resend
    assert posthog.event_count == 2
    assert posthog.accepted_uuids() == {capture_event(1)["uuid"]}
    assert len(posthog.unique_events()) == 1
    assert [r.status for r in posthog.requests] == [503, None, None, 200]
    assert [r.stored for r in posthog.requests] == [False, False, True, True]
    posthog.inject(Fault.status(500), times=3)
    posthog.clear_faults()
    assert post(posthog.url, batch(capture_event(5))) == 200
    posthog.down_for(0.3)
    assert post(posthog.url, batch(capture_event(2))) == 503


def test_unique_events_collapse_like_posthog(posthog: PostHogStandIn) -> None:
    same = capture_event(1)
    other_day = capture_event(1, timestamp="2024-03-02T00:00:01Z")
    other_name = capture_event(1, event="Order Completed")
    no_uuid = {k: v for k, v in capture_event(2).items() if k != "uuid"}
    events = [same, same, other_day, other_name, no_uuid, no_uuid]
    assert post(posthog.url, batch(*events)) == 200
    assert len(posthog.events) == 6
    assert len(posthog.unique_events()) == 5
    alias = capture_event(3, event="$create_alias", properties={"alias": "device-1"})
    assert post(posthog.url, batch(alias)) == 200
    assert [a["event"] for a in posthog.aliases()] == ["$create_alias"]


def test_capture_counts_without_keeping_events() -> None:
    with PostHogStandIn(keep_events=False, latency=0.01) as server:
        assert (
            post(server.url, batch(*[capture_event(n) for n in range(50)]), gzip_body=True) == 200
        )
        assert post(server.url, batch(capture_event(0))) == 200
        assert server.event_count == 51
        assert len(server.accepted_uuids()) == 50
        assert server.duplicate_uuid_count == 1
        assert server.events == []


def test_holdings_is_one_consistent_line_while_batches_arrive() -> None:
    """The rehearsal's report line (`python -m tests.testbed`) is read while the target sends:
    one snapshot, so distinct uuids never exceed events and the persons model is never read
    while a batch changes it (that raised 'dictionary changed size during iteration')."""
    numbers = re.compile(
        r"PostHog stand-in holds ([\d,]+) events incl\. 0 aliases \(([\d,]+) distinct uuids\), "
        r"([\d,]+) persons, 0 groups; ([\d,]+) batch requests"
    )
    with PostHogStandIn(keep_events=False) as server:

        def send(first: int) -> None:
            for start in range(first, first + 2_000, 50):
                events = [capture_event(n) for n in range(start, start + 50)]
                assert post(server.url, batch(*events)) == 200

        senders = [threading.Thread(target=send, args=(n * 2_000,)) for n in range(4)]
        for sender in senders:
            sender.start()
        lines = []
        while any(sender.is_alive() for sender in senders):
            lines.append(server.holdings())
        for sender in senders:
            sender.join()
        lines.append(server.holdings())
    for line in lines:
        match = numbers.fullmatch(line)
        assert match, line
        events, uuids, persons, _ = (int(n.replace(",", "")) for n in match.groups())
        assert uuids == events == persons, line  # each event its own uuid and person
    assert lines[-1] == (
        "PostHog stand-in holds 8,000 events incl. 0 aliases (8,000 distinct uuids), "
        "8,000 persons, 0 groups; 160 batch requests"
    )


# ---- PostHog stand-in: persons and groups, by PostHog's rules -------------------------------


def person_event(name: str, distinct_id: str, n: int, **properties: Any) -> dict[str, Any]:
    return capture_event(n, event=name, distinct_id=distinct_id, properties=properties)


def test_persons_are_built_and_merged_by_posthogs_rules(posthog: PostHogStandIn) -> None:
    events = [
        person_event("seen", "dev-1", 1, **{"$set": {"plan": "free", "os": "iOS"}}),
        person_event("seen", "user-a", 2, **{"$set": {"plan": "pro"}}),
        # The device's person merges into user-a's: the target's value wins on a conflict.
        person_event("$create_alias", "user-a", 3, alias="dev-1"),
        # dev-1 is on an identified person now: a second user cannot take it.
        person_event("seen", "user-b", 4),
        person_event("$identify", "user-b", 5, **{"$anon_distinct_id": "dev-1"}),
        # Illegal ids never merge (PostHog's lists, quotes and case as PostHog compares).
        person_event("$create_alias", "user-b", 6, alias="undefined"),
        person_event("$identify", "user-b", 7, **{"$anon_distinct_id": '"null"'}),
        person_event("$create_alias", "Anonymous", 8, alias="dev-9"),
        # $merge_dangerously skips the already-identified check.
        person_event("seen", "dev-2", 9),
        person_event("$create_alias", "user-c", 10, alias="dev-2"),
        person_event("$merge_dangerously", "user-b", 11, alias="user-c"),
        # $set applies in ingestion order (an older timestamp does not matter); $set_once fills.
        person_event(
            "late",
            "user-a",
            12,
            **{"$set": {"plan": "old"}, "$set_once": {"plan": "x", "first": 1}},
        ),
        person_event("seen", "user-a", 13, **{"$unset": ["os"]}),
    ]
    assert post(posthog.url, batch(*events)) == 200
    people = posthog.people
    a = people.person("user-a")
    assert a is not None
    assert a.distinct_ids == {"user-a", "dev-1"}
    assert a.properties == {"plan": "old", "first": 1}
    assert a.is_identified
    b = people.person("user-b")
    assert b is not None and b.distinct_ids == {"user-b", "user-c", "dev-2"}
    assert people.person("undefined") is None  # merged into nobody
    assert people.person("dev-9") is None and people.person("Anonymous") is not None
    assert [kind for kind, _ in people.warnings] == [
        "cannot_merge_already_identified",
        "cannot_merge_with_illegal_distinct_id",
        "cannot_merge_with_illegal_distinct_id",
        "cannot_merge_with_illegal_distinct_id",
    ]
    assert len(people.persons()) == len({p.distinct_ids for p in people.persons()})


def test_groups_take_group_set_key_by_key_in_ingestion_order(posthog: PostHogStandIn) -> None:
    def identify(n: int, values: Any) -> dict[str, Any]:
        return person_event(
            "$groupidentify", "user-a", n,
            **{"$group_type": "company", "$group_key": "acme", "$group_set": values},
        )  # fmt: skip

    posthog.people.add_group("company", "acme", {"name": "Acme (live)", "seats": 1})
    assert post(posthog.url, batch(identify(1, {"seats": 5}), identify(2, {"tier": "gold"}))) == 200
    assert post(posthog.url, batch(identify(3, "not an object"))) == 200
    assert posthog.people.groups() == {
        ("company", "acme"): {"name": "Acme (live)", "seats": 5, "tier": "gold"}
    }
    assert posthog.people.warnings[-1][0] == "invalid_group_set"


def test_posthog_moves_far_future_timestamps_to_now_and_cuts_distinct_ids(
    posthog: PostHogStandIn,
) -> None:
    before = datetime.now(UTC)
    events = [
        capture_event(1, timestamp="2099-01-01T00:00:00+00:00"),
        capture_event(2, timestamp=(before + timedelta(hours=22)).isoformat()),
        capture_event(3, distinct_id="u" * 250 + "A"),
        capture_event(4, distinct_id="u" * 250 + "B"),
        capture_event(5, distinct_id="ann\0x"),
    ]
    assert post(posthog.url, batch(*events)) == 200
    stored = {event["uuid"]: event["timestamp"] for event in posthog.events}
    moved = datetime.fromisoformat(stored[events[0]["uuid"]])
    assert before <= moved <= datetime.now(UTC)
    assert stored[events[1]["uuid"]] == events[1]["timestamp"]  # within 23 h: kept
    assert ("event_timestamp_in_future", events[0]["uuid"]) in posthog.people.warnings
    persons = {person.distinct_ids for person in posthog.people.persons()}
    assert frozenset({"u" * 200}) in persons and frozenset({"ann\ufffdx"}) in persons
