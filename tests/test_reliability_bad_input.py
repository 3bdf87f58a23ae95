"""Bad input through the whole pipeline: damaged exports stop loudly with nothing bookmarked
past them; bad records are dead-lettered with their reason while the rest arrives; bad
settings are refused at start-up, one clear line each, before any work.
"""

from __future__ import annotations

import uuid
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from isal import igzip

from tests.pipeline_harness import (
    AMPLITUDE_KEY,
    AMPLITUDE_SECRET,
    DRILL_HOURS,
    DRILL_START,
    FIGURES,
    POSTHOG_KEY,
    Pipeline,
    PipelineResult,
    amplitude,
    assert_aliases_once,
    assert_delivered_exactly,
    build_drill_store,
    dead_letters,
    drill_pipeline,
    drill_store,
    drill_tap_config,
    drill_target_config,
    event_uuid_counts,
    pipeline,
    posthog,
    why_unsendable,
)
from tests.target_support import (
    StateWatcher,
    is_export_event,
    messages_with_states,
    record,
    start_target,
    tap_records,
    target_config,
)
from tests.testbed.amplitude import AmplitudeStandIn
from tests.testbed.faults import Fault
from tests.testbed.posthog import PostHogStandIn
from tests.testbed.store import ExportStore

__all__ = ["amplitude", "drill_store", "pipeline", "posthog"]  # fixtures used by name

pytestmark = pytest.mark.timeout(120)

END = (DRILL_START + timedelta(hours=DRILL_HOURS)).isoformat()
BAD_HOUR = DRILL_START + timedelta(hours=13)  # inside the 2-hour window 12:00-14:00


@pytest.fixture
def own_store(tmp_path: Path) -> ExportStore:
    """The drill export, but the test's own to damage."""
    return build_drill_store(tmp_path / "export")


@pytest.fixture
def own_pipeline(
    tmp_path: Path, own_store: ExportStore
) -> Iterator[tuple[Pipeline, PostHogStandIn]]:
    with (
        AmplitudeStandIn(own_store, AMPLITUDE_KEY, AMPLITUDE_SECRET) as api,
        PostHogStandIn(api_key=POSTHOG_KEY) as capture,
    ):
        yield (
            Pipeline(
                tmp_path / "run",
                drill_tap_config(api, DRILL_HOURS),
                drill_target_config(tmp_path / "run", capture),
            ),
            capture,
        )


def rewrite_member(store: ExportStore, hour: datetime, edit: Callable[[list[bytes]], None]) -> str:
    """Edit the lines of the hour's first member in place (re-gzipped); return its name."""
    member = store.members(hour, hour)[0]
    with igzip.open(member.path, "rb") as lines:
        content = [line.rstrip(b"\n") for line in lines]
    edit(content)
    member.path.write_bytes(igzip.compress(b"\n".join(content) + b"\n"))
    return member.name


def assert_stopped_before(
    failed: PipelineResult, posthog: PostHogStandIn, expected: dict[str, dict[str, Any]],
    bad_hour: datetime,
) -> None:  # fmt: skip
    """The run failed loudly; its STATE stops at or before the damaged hour, and vouches only
    for events PostHog stored; nothing of the damaged hour was bookmarked."""
    assert failed.tap_returncode != 0, failed.describe()
    assert failed.bookmark is not None and failed.bookmark <= bad_hour.isoformat()
    stored = set(event_uuid_counts(posthog))
    vouched = {
        u
        for u, r in expected.items()
        if r["server_upload_time"].replace(" ", "T") + "+00:00" < failed.bookmark
    }
    assert vouched <= stored


def test_a_corrupt_gzip_member_stops_loudly_naming_it_and_bookmarks_nothing_past_it(
    own_pipeline: tuple[Pipeline, PostHogStandIn], own_store: ExportStore
) -> None:
    pipeline, posthog = own_pipeline
    expected = {r["uuid"]: r for r in own_store.iter_events()}
    damaged = own_store.corrupt_member(BAD_HOUR)
    failed = pipeline.run()
    assert_one_clear_line(
        failed.tap_stderr, "tap-amplitude stopped:", "window 2024-05-01T12:00Z", damaged.name
    )
    assert_stopped_before(failed, posthog, expected, BAD_HOUR)
    assert failed.bookmark == BAD_HOUR.isoformat()  # every hour before it is done


def test_an_invalid_json_line_is_set_aside_and_the_migration_goes_on(
    own_pipeline: tuple[Pipeline, PostHogStandIn], own_store: ExportStore
) -> None:
    """Re-reading cannot mend a broken line, so it must not stop the run (issue 11): it is
    kept byte for byte beside the dead letters, and everything else arrives."""
    pipeline, posthog = own_pipeline
    broken = b'{"event_type": "Broken", "user_id": "u'
    lost: list[str] = []

    def break_line_3(lines: list[bytes]) -> None:
        lost.append(orjson.loads(lines[2])["uuid"])
        lines[2] = broken

    name = rewrite_member(own_store, BAD_HOUR, break_line_3)
    result = pipeline.run()
    assert result.ok, result.describe()
    assert result.bookmark == END
    assert_one_clear_line(
        result.tap_stderr, "window 2024-05-01T12:00Z", f"{name}, line 3: set aside as unreadable"
    )
    assert_delivered_exactly(posthog, own_store, excluded=set(lost))
    dead_letter = Path(pipeline.target_config["dead_letter_path"])
    kept = dead_letter.with_name(dead_letter.stem + ".unreadable-lines.raw")
    assert kept.read_bytes() == broken + b"\n"


def test_a_corrupt_zip_in_local_export_files_stops_loudly_naming_it(
    tmp_path: Path, drill_store: ExportStore, posthog: PostHogStandIn
) -> None:
    exports = tmp_path / "downloads"
    exports.mkdir()
    first = exports / "export-a.zip"
    second = exports / "export-b.zip"
    drill_store.write_zip(first, DRILL_START, DRILL_START + timedelta(hours=11))
    drill_store.write_zip(second, BAD_HOUR - timedelta(hours=1), DRILL_START + timedelta(hours=23))
    with zipfile.ZipFile(second) as archive:
        damaged = archive.infolist()[3]  # the member of 2024-05-01 15:00
    data = bytearray(second.read_bytes())
    middle = damaged.header_offset + 100 + (damaged.compress_size // 2)
    data[middle : middle + 200] = bytes(200)  # zeroes over that member's gzip stream
    second.write_bytes(bytes(data))
    damaged_hour = BAD_HOUR + timedelta(hours=2)
    tap_config = {
        "export_path": str(exports),
        "start_date": DRILL_START.isoformat(),
        "end_date": END,
        "window_hours": 2,
    }
    pipeline = Pipeline(
        tmp_path / "run", tap_config, drill_target_config(tmp_path / "run", posthog)
    )
    failed = pipeline.run()
    assert_one_clear_line(
        failed.tap_stderr, "tap-amplitude stopped:", "export-b.zip", damaged.filename
    )
    expected = {r["uuid"]: r for r in drill_store.iter_events()}
    assert_stopped_before(failed, posthog, expected, damaged_hour)


def test_bad_records_are_dead_lettered_with_their_reason_and_the_rest_delivered(
    tmp_path: Path,
) -> None:
    store = build_drill_store(tmp_path / "export", invalid_fraction=0.04, seed=62)
    huge_uuid = str(uuid.UUID(int=0x5EED, version=4))

    def add_huge_event(lines: list[bytes]) -> None:
        record = orjson.loads(lines[0])
        record.update(uuid=huge_uuid, event_type="Huge Upload")
        record["event_properties"] = {"blob": "x" * 1_100_000}  # over PostHog's ~1 MB per event
        lines.append(orjson.dumps(record))

    rewrite_member(store, DRILL_START + timedelta(hours=5), add_huge_event)
    records = list(store.iter_events())
    expected_reasons = {r["uuid"]: why_unsendable(r) for r in records}
    unsendable = {u for u, reason in expected_reasons.items() if reason}
    assert len(unsendable) >= 20, "the spec should spoil a few dozen records"

    with (
        AmplitudeStandIn(store, AMPLITUDE_KEY, AMPLITUDE_SECRET) as api,
        PostHogStandIn(api_key=POSTHOG_KEY) as posthog,
    ):
        pipeline = drill_pipeline(tmp_path / "run", api, posthog)
        result = pipeline.run()
        assert result.ok, result.describe()
        assert result.bookmark == END
        assert_delivered_exactly(posthog, store, excluded=unsendable)
        assert_aliases_once(posthog, store)

    letters = dead_letters(Path(pipeline.target_config["dead_letter_path"]))
    by_uuid = {letter["record"]["uuid"]: letter for letter in letters}
    assert len(letters) == len(by_uuid) == len(unsendable)
    for record_uuid, letter in by_uuid.items():
        assert expected_reasons[record_uuid] in letter["reason"], letter["reason"]
        assert letter["stream"] == "events"
    assert f"{len(letters)} dead-lettered" in result.target_stderr.splitlines()[-1]
    FIGURES.dead_lettered += len(letters)


# --- settings -----------------------------------------------------------------------------


FUTURE = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0).isoformat()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"end_date": "2024-04-01T00:00:00+00:00"}, "is not after start_date"),
        ({"start_date": FUTURE, "end_date": None}, f"start_date {FUTURE} is in the future."),
        ({"window_size": 3}, "Unknown setting 'window_size'."),
    ],
    ids=["end-before-start", "start-in-future", "unknown-setting"],
)
def test_bad_tap_settings_are_one_clear_line_before_any_work(
    overrides: dict[str, Any],
    message: str,
    pipeline: Pipeline,
    amplitude: AmplitudeStandIn,
    posthog: PostHogStandIn,
) -> None:
    pipeline.tap_config.update(overrides)
    pipeline.tap_config = {k: v for k, v in pipeline.tap_config.items() if v is not None}
    failed = pipeline.run()
    assert failed.tap_returncode != 0
    assert_one_clear_line(failed.tap_stderr, message)
    assert amplitude.requests == [] and posthog.requests == []
    assert failed.records_relayed == 0


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("wrong-keys", "api_key and secret_key"),
        ("wrong-region", "data_region"),
        ("unreachable", "still failing after 1 retries: ConnectionError"),
    ],
)
def test_amplitude_refusing_or_unreachable_stops_at_start_with_a_clear_line(
    setup: str,
    message: str,
    pipeline: Pipeline,
    amplitude: AmplitudeStandIn,
    posthog: PostHogStandIn,
) -> None:
    if setup == "wrong-keys":
        pipeline.tap_config["secret_key"] = "ampsecret-drill-wrong-never-print"
    elif setup == "wrong-region":
        amplitude.inject(Fault.status(403))  # a key of the other region's project
    else:
        pipeline.tap_config.update(api_url="http://127.0.0.1:9", max_retries=1)
    failed = pipeline.run()
    assert failed.tap_returncode != 0
    assert_one_clear_line(failed.tap_stderr, "tap-amplitude stopped:", message)
    if setup == "unreachable":
        assert_one_clear_line(failed.tap_stderr, "tap-amplitude stopped:", "port=9", "refused")
    assert failed.records_relayed == 0 and posthog.requests == []
    if setup != "unreachable":
        assert len(amplitude.requests) == 1, "a refusal of the keys is not retried"
    assert "never-print" not in failed.tap_stderr


def test_wrong_posthog_key_stops_the_pipeline_clearly(
    pipeline: Pipeline, posthog: PostHogStandIn
) -> None:
    pipeline.target_config["api_key"] = "phc_drill_wrong_key_never_print"
    failed = pipeline.run()
    assert failed.target_returncode == 1
    assert_one_clear_line(failed.target_stderr, "PostHog refused the project API key (401)")
    assert failed.states == []
    assert len(posthog.requests) <= pipeline.target_config["concurrency"]  # not retried
    assert posthog.events == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"batch_sise": 10}, "batch_sise"),
    ],
    ids=["unknown-setting"],
)
def test_bad_target_settings_are_one_clear_line_before_any_work(
    overrides: dict[str, Any], message: str, pipeline: Pipeline, posthog: PostHogStandIn
) -> None:
    pipeline.target_config.update(overrides)
    failed = pipeline.run()
    assert failed.target_returncode != 0
    assert_one_clear_line(failed.target_stderr, message)
    assert posthog.requests == [] and failed.states == []


def assert_one_clear_line(stderr: str, *parts: str) -> None:
    """The problem is said on one line (holding every part), and no traceback buries it."""
    lines = [line for line in stderr.splitlines() if all(part in line for part in parts)]
    assert lines, f"no line says {parts!r}:\n{stderr[-3000:]}"
    assert "Traceback" not in stderr, stderr[-3000:]


def test_input_cut_mid_line_by_a_dying_tap_settles_what_came_before(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """A tap killed while writing leaves half a line at the end of the target's input: the
    target says so in one line (without the record's content), delivers everything before it,
    emits the STATE that covers it, and exits non-zero."""
    records = tap_records(120, seed=8)
    messages = messages_with_states(records, 30)
    cut = orjson.dumps(record(records[0] | {"uuid": "cut-off"}))[:90]
    config = target_config(tmp_path, posthog, api_key=POSTHOG_KEY, batch_size=25)
    posthog.latency = 0.05  # batches still in flight when the cut line is read
    process = start_target(config, tmp_path)
    watcher = StateWatcher(process, posthog)
    assert process.stdin is not None and process.stderr is not None
    process.stdin.write(b"".join(orjson.dumps(m) + b"\n" for m in messages) + cut)
    process.stdin.close()
    stderr = process.stderr.read().decode()
    returncode = process.wait(timeout=60)
    watcher.join()
    assert returncode == 1
    assert_one_clear_line(stderr, "input")
    assert cut.decode()[40:80] not in stderr, "a record's content was logged"
    assert watcher.states[-1] == {"done": len(records)}, "what came before the cut was not settled"
    assert {e["uuid"] for e in posthog.events if is_export_event(e)} >= {r["uuid"] for r in records}
