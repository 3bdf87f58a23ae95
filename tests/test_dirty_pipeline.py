"""100,000 good events with a dozen odd lines scattered among them, through `tap | target`, from
local files and from the Export API: every good event arrives exactly once, every odd line is
accounted for (repaired and delivered, dead-lettered, or set aside byte for byte), the bookmark
ends at the range's end, and a rerun sends nothing (issue 11)."""

from __future__ import annotations

import base64
import json
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from isal import igzip
from tap_amplitude.keys import derive_uuid

from tests.pipeline_harness import (
    AMPLITUDE_KEY,
    AMPLITUDE_SECRET,
    DRILL_START,
    POSTHOG_KEY,
    Pipeline,
    PipelineResult,
    drill_tap_config,
    drill_target_config,
)
from tests.target_support import is_export_event
from tests.testbed.amplitude import AmplitudeStandIn
from tests.testbed.events import ExportSpec
from tests.testbed.posthog import PostHogStandIn
from tests.testbed.store import ExportStore

pytestmark = pytest.mark.timeout(600)

HOURS = 24
EVENTS = 100_000
END = (DRILL_START + timedelta(hours=HOURS)).isoformat()
WIDE = 123456789012345678901234567890
NS = uuid.UUID("6b1c9f3e-2f4d-5a8e-9c70-3d1e8a5b4f21")


def odd_record(n: int, hour: int, **fields: Any) -> dict[str, Any]:
    """A valid record of the hour (Amplitude's own time form), changed by `fields`."""
    at = f"{(DRILL_START + timedelta(hours=hour)):%Y-%m-%d %H}:30:{n:02d}.000000"
    record: dict[str, Any] = {
        "uuid": str(uuid.UUID(int=0xD1127 + n, version=4)),
        "event_type": f"Odd {n}",
        "event_time": at,
        "client_event_time": at,
        "server_received_time": at,
        "server_upload_time": at,
        "device_id": f"odd-device-{n}",
        "user_id": f"odd-user-{n}",
        "$insert_id": f"odd-insert-{n}",
    }
    record.update(fields)
    return {k: v for k, v in record.items() if v is not ...}


@dataclass
class Odd:
    """One odd line, where it goes, and what must become of it."""

    hour: int
    line: bytes
    fate: str  # "delivered" | "dead-lettered" | "set aside" | "blank"
    uuid: str | None = None  # the uuid the delivered event must carry
    check: dict[str, Any] = field(default_factory=dict)  # property -> exact value in PostHog


def odd_lines() -> list[Odd]:
    dumps = orjson.dumps
    no_uuid = odd_record(1, 1, uuid=...)  # issue 11, input 1
    surrogate = dumps(odd_record(2, 3, event_properties={"text": "nice X"})).replace(
        b"nice X", b"nice \\ud83d"
    )  # issue 11, input 2
    wide = json.dumps(odd_record(3, 5, event_properties={"order_id": WIDE})).encode()  # input 5
    client_time = odd_record(4, 7, event_time=...)  # issue 11, input 6
    no_time = odd_record(5, 9, event_time="2024:05:01 09:30:05.000000", client_event_time=None)
    no_time["server_received_time"] = "later"
    bom = b"\xef\xbb\xbf" + dumps(odd_record(6, 11))
    latin1 = dumps(odd_record(7, 13, event_properties={"city": "Zurich"})).replace(
        b"Zurich", b"Z\xfcrich"
    )
    float_id = dumps(odd_record(8, 15, user_id=4242424242.0))
    # Two users whose ids a repair would make one ("odd-user-9\ufffd"): two people still.
    same_after_repair = [
        dumps(odd_record(n, 19, user_id="USER")).replace(b'"USER"', b'"odd-user-9' + cut + b'"')
        for n, cut in ((9, rb"\ud800"), (10, rb"\ud801"))
    ]
    return [
        Odd(1, dumps(no_uuid), "delivered", uuid=derive_uuid(no_uuid, dumps(no_uuid))),
        Odd(
            3, surrogate, "delivered", uuid=odd_record(2, 0)["uuid"], check={"text": "nice \ufffd"}
        ),
        Odd(5, wide, "delivered", uuid=odd_record(3, 0)["uuid"]),
        Odd(
            7,
            dumps(client_time),
            "delivered",
            uuid=client_time["uuid"],
            check={"$amplitude_timestamp_from": "client_event_time"},
        ),
        Odd(9, dumps(no_time), "dead-lettered", uuid=no_time["uuid"]),
        Odd(11, bom, "delivered", uuid=odd_record(6, 0)["uuid"]),
        Odd(13, latin1, "delivered", uuid=odd_record(7, 0)["uuid"], check={"city": "Z\ufffdrich"}),
        Odd(15, float_id, "delivered", uuid=odd_record(8, 0)["uuid"]),
        Odd(2, b"null", "set aside"),
        Odd(6, b"[]", "set aside"),
        Odd(12, b'{"event_type":"Half","user_id":"u', "set aside"),
        Odd(20, b"\x00\x1f\x8b\xff not a line", "set aside"),
        Odd(17, b" \t\r", "blank"),  # counted, holds nothing to keep
        Odd(18, dumps(odd_record(11, 18)) + dumps(odd_record(12, 18)), "set aside"),  # 2 on 1
        Odd(19, same_after_repair[0], "delivered", uuid=odd_record(9, 0)["uuid"]),
        Odd(19, same_after_repair[1], "delivered", uuid=odd_record(10, 0)["uuid"]),
    ]


@dataclass
class DirtyExport:
    store: ExportStore
    odd: list[Odd]
    good: set[str]  # uuids of the 100,000 generated events


@pytest.fixture(scope="module")
def dirty_export(tmp_path_factory: pytest.TempPathFactory) -> DirtyExport:
    directory = tmp_path_factory.mktemp("dirty-export")
    spec = ExportSpec(start=DRILL_START, hours=HOURS, events=EVENTS, seed=111)
    store = ExportStore.build(directory, spec)
    good = store.uuids()
    assert len(good) == EVENTS
    odd = odd_lines()
    by_hour: dict[int, list[Odd]] = {}
    for item in odd:
        by_hour.setdefault(item.hour, []).append(item)
    for hour, items in by_hour.items():
        member = store.members(DRILL_START + timedelta(hours=hour))[0]
        with igzip.open(member.path, "rb") as lines:
            content = [line.rstrip(b"\n") for line in lines]
        for n, item in enumerate(items):  # scattered inside the member
            content.insert((n + 1) * len(content) // (len(items) + 1), item.line)
        member.path.write_bytes(igzip.compress(b"\n".join(content) + b"\n"))
    # Beside the members, what copies of exports collect (skipped, one info line each).
    (directory / f"._{store.members()[0].name}").write_bytes(b"\x00\x05\x16\x07Mac OS X")
    (directory / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (directory / "complete").write_bytes(b"")
    return DirtyExport(store, odd, good)


@dataclass
class Observed:
    """What PostHog stored, kept lean: (uuid, event name) of each event, odd ones in full."""

    watch: set[str]
    seen: list[tuple[str, bool]] = field(default_factory=list)  # (uuid, is an export event)
    odd: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __call__(self, event: dict[str, Any]) -> bool:
        self.seen.append((event["uuid"], is_export_event(event)))
        if event["uuid"] in self.watch:
            self.odd[event["uuid"]] = event
        return False  # an observer: never refuses a batch


@pytest.fixture(params=["files", "api"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def posthog() -> Iterator[PostHogStandIn]:
    with PostHogStandIn(api_key=POSTHOG_KEY, keep_events=False) as server:
        server.keep_raw_events = lambda raw: str(WIDE).encode() in raw
        yield server


def run_to_end(pipeline: Pipeline, state: dict[str, Any] | None = None) -> PipelineResult:
    return pipeline.start(state).wait(timeout=400)


def test_a_dozen_odd_lines_among_100000_events_stop_nothing_and_lose_nothing(
    mode: str, dirty_export: DirtyExport, posthog: PostHogStandIn, tmp_path: Path
) -> None:
    odd = dirty_export.odd
    observed = Observed({item.uuid for item in odd if item.uuid})
    posthog.reject_if(observed)
    workdir = tmp_path / "run"
    target_config = drill_target_config(workdir, posthog, batch_size=1000, concurrency=4)
    with AmplitudeStandIn(dirty_export.store, AMPLITUDE_KEY, AMPLITUDE_SECRET) as api:
        tap_config = drill_tap_config(api, HOURS, window_hours=6)
        if mode == "files":
            tap_config = {
                "export_path": str(dirty_export.store.directory),
                "start_date": tap_config["start_date"],
                "end_date": END,
            }
        pipeline = Pipeline(workdir, tap_config, target_config)
        result = run_to_end(pipeline)
        assert result.ok, result.describe()
        assert result.bookmark == END

        # Every good event and every deliverable odd one, exactly once.
        counts = Counter(u for u, exported in observed.seen if exported)
        delivered = {item.uuid for item in odd if item.fate == "delivered"}
        assert set(counts) == dirty_export.good | delivered
        assert set(counts.values()) == {1}
        assert posthog.duplicate_uuid_count == 0

        # Each odd line's fate, with the exact values.
        for item in odd:
            if item.fate != "delivered":
                continue
            event = observed.odd[str(item.uuid)]
            for name, value in item.check.items():
                assert event["properties"][name] == value, (item.hour, name)
        assert observed.odd[odd[0].uuid or ""]["properties"]["$amplitude_uuid_derived"] is True
        assert observed.odd[odd[7].uuid or ""]["distinct_id"] == "4242424242"
        pair = [observed.odd[item.uuid or ""]["distinct_id"] for item in odd[-2:]]
        assert pair[0] != pair[1], pair  # a repair never makes two people one
        assert all(p.startswith("odd-user-9\ufffd#repaired-") for p in pair), pair
        (wide_raw,) = posthog.raw_events
        assert b'"order_id":' + str(WIDE).encode() in wide_raw

        dead_letter = Path(target_config["dead_letter_path"])
        letters = [json.loads(line) for line in dead_letter.read_bytes().splitlines()]
        assert [letter["record"]["uuid"] for letter in letters] == [odd[4].uuid]
        assert letters[0]["record"]["event_time"] == "2024:05:01 09:30:05.000000"  # as exported

        set_aside = [item.line for item in odd if item.fate == "set aside"]
        raw = dead_letter.with_name(dead_letter.stem + ".unreadable-lines.raw")
        assert sorted(raw.read_bytes().split(b"\n")[:-1]) == sorted(set_aside)
        index = dead_letter.with_name(dead_letter.stem + ".unreadable-lines.jsonl")
        kept = [json.loads(line) for line in index.read_bytes().splitlines()]
        assert sorted(base64.b64decode(k["line_base64"]) for k in kept) == sorted(set_aside)
        hours = sorted(k["hour"] for k in kept)
        assert hours == sorted(
            (DRILL_START + timedelta(hours=item.hour)).isoformat()
            for item in odd
            if item.fate == "set aside"
        )

        summary = result.target_stderr.splitlines()[-1]
        assert "1 dead-lettered" in summary and "5 unreadable lines set aside" in summary
        assert ": 2 not an object, 2 not JSON, 1 not one JSON object" in summary
        tap_done = next(line for line in result.tap_stderr.splitlines() if "Done:" in line)
        assert (
            "5 lines set aside as unreadable (2 not an object, 2 not JSON, 1 not one JSON "
            "object; stream unreadable_lines), 1 blank lines skipped, 1 uuids derived"
        ) in tap_done
        if mode == "files":
            for name in ("._", ".DS_Store", "complete"):
                assert f"{dirty_export.store.directory}/{name}" in result.tap_stderr
        assert "Traceback" not in result.tap_stderr + result.target_stderr

        # A rerun from the last STATE reads nothing new and sends nothing.
        requests = len(posthog.requests)
        rerun = run_to_end(pipeline, result.last_state)
        assert rerun.ok, rerun.describe()
        assert len(posthog.requests) == requests
        assert rerun.records_relayed == 0
    shutil.rmtree(workdir, ignore_errors=True)
