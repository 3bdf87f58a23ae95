"""What a migration says while it runs and at its end: progress lines, the dry run's summary,
and its payload file, always that run's own."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from tap_amplitude.range_progress import RangeProgress
from target_posthog.progress import Checkpoints, Counts, Progress

from tests.target_support import (
    POSTHOG_KEY,
    SCHEMA,
    record,
    run_target,
    state,
    tap_records,
    target_config,
)
from tests.testbed.posthog import PostHogStandIn


@pytest.fixture
def posthog() -> Iterator[PostHogStandIn]:
    with PostHogStandIn(api_key=POSTHOG_KEY) as server:
        yield server


def test_a_progress_line_gives_delivered_of_received_speed_with_aliases_and_an_eta() -> None:
    progress = Progress(6000, now=0.0)  # 100 events/s agreed
    counts = Counts(
        received=10_000, events_sent=3_000, aliases_sent=600, updates_sent=0, dead_letters=20
    )
    line = progress.line(counts, in_flight=2, now=10.0)
    assert line.startswith("3,000 events delivered of 10,000 received so far (30.2%)")
    assert "600 aliases, 20 dead-lettered" in line
    # 3,600 PostHog events in 10 s; the ETA takes the limit (100/s), not the faster speed.
    assert "360 events/s to PostHog incl. aliases and updates (limit 100/s)" in line
    assert "delivery 1 min 10 s behind reading" in line  # 6,980 left at 100/s
    later = Counts(
        received=10_000, events_sent=3_050, aliases_sent=650, updates_sent=0, dead_letters=20
    )
    slower = progress.line(later, in_flight=1, now=20.0)  # 100 in 10 s: the recent speed
    assert "10 events/s" in slower and "delivery 11 min 33 s behind reading" in slower
    unlimited = Progress(None, now=0.0).line(counts, in_flight=0, now=10.0)
    assert "(no speed limit)" in unlimited and "delivery 19 s behind reading" in unlimited
    # PostHog slow or asking to wait: no lag is made up from the limit (it said "6 s").
    stalled = progress.line(later, in_flight=6, now=30.0)
    assert "nothing delivered in the last seconds (batches waiting on PostHog)" in stalled
    # The person and group updates a run adds at its end are received and settled too.
    done = Counts(
        received=10_300, events_sent=9_980, aliases_sent=700, updates_sent=300, dead_letters=20
    )
    end = progress.line(done, in_flight=0, now=40.0)
    assert "of 10,300 received so far (100.0%)" in end and "all received is delivered" in end


def hour_state(hour: int) -> dict:
    """tap-amplitude's STATE at the end of an export hour (singer-sdk's shape)."""
    value = f"2024-03-01T{hour:02d}:00:00+00:00"
    return {
        "bookmarks": {
            "events": {"replication_key": "server_upload_time", "replication_key_value": value}
        }
    }


def test_a_checkpoint_line_says_each_finished_hour_that_delivered_events() -> None:
    checkpoints = Checkpoints()

    def counts(sent: int, dead: int = 0) -> Counts:
        return Counts(
            received=900, events_sent=sent, aliases_sent=0, updates_sent=0, dead_letters=dead
        )

    assert checkpoints.line(hour_state(1), counts(120, dead=3), now=0.0) == (
        "checkpoint events 2024-03-01T01:00:00+00:00: everything before it is in PostHog or "
        "dead-lettered (123 events since the last checkpoint; 120 delivered of 900 received "
        "so far)"
    )
    assert checkpoints.line(hour_state(2), counts(120, dead=3), now=5.0) is None  # an empty hour
    assert checkpoints.line(hour_state(3), counts(300, dead=3), now=5.0) == (
        "checkpoint events 2024-03-01T03:00:00+00:00: everything before it is in PostHog or "
        "dead-lettered (180 events since the last checkpoint; 300 delivered of 900 received "
        "so far)"
    )
    assert checkpoints.line(hour_state(3), counts(301, dead=3), now=9.0) is None  # unmoved
    assert checkpoints.line({"done": 1}, counts(400), now=9.0) is None  # no bookmark in it
    # At most one line a second: hour 4 passes 0.5 s after hour 3's line, unsaid; hour 5's line
    # counts its events too.
    assert checkpoints.line(hour_state(4), counts(350, dead=3), now=5.5) is None
    assert checkpoints.line(hour_state(5), counts(400, dead=3), now=6.0) == (
        "checkpoint events 2024-03-01T05:00:00+00:00: everything before it is in PostHog or "
        "dead-lettered (100 events since the last checkpoint; 400 delivered of 900 received "
        "so far)"
    )
    dry = Checkpoints(dry_run=True).line(hour_state(1), counts(5))
    assert dry is not None and "written to the payload file or dead-lettered (dry run" in dry


def test_the_target_logs_its_checkpoints_and_progress_says_the_last(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    records = tap_records(40)
    messages = [SCHEMA, *(record(r) for r in records), {"type": "STATE", "value": hour_state(6)}]
    run = run_target(target_config(tmp_path, posthog), messages, tmp_path, posthog)
    assert run.returncode == 0, run.stderr
    assert (
        "checkpoint events 2024-03-01T06:00:00+00:00: everything before it is in PostHog or "
        "dead-lettered (40 events since the last checkpoint; 40 delivered of 40 received so far)"
    ) in run.stderr
    last = Progress(None, now=0.0).line(
        Counts(40, 40, 0, 0, 0), 0, bookmark="events 2024-03-01T06:00:00+00:00", now=1.0
    )
    assert last.endswith("0 batches in flight; last checkpoint events 2024-03-01T06:00:00+00:00")


def test_a_dry_run_says_nothing_was_sent_and_always_replaces_its_payload_file(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    payloads = tmp_path / "payloads.jsonl"
    config = target_config(tmp_path, posthog, dry_run_path=str(payloads))
    ended = state({"bookmarks": {}})  # a tap that finished (without it: "input ended: ...")
    first = run_target(config, [SCHEMA, *(record(r) for r in tap_records(40)), ended], tmp_path)
    assert first.returncode == 0, first.stderr
    assert "done: dry run: nothing sent; " in first.stderr
    assert "events sent" not in first.stderr and "requests" not in first.stderr.split("done:")[1]
    assert sum(len(orjson.loads(line)["batch"]) for line in payloads.read_bytes().splitlines())
    assert posthog.event_count == 0

    # A range with no events: the file is this run's (empty), not the last run's payloads.
    empty = run_target(config, [SCHEMA, ended], tmp_path)
    assert empty.returncode == 0, empty.stderr
    assert payloads.exists() and payloads.read_bytes() == b""


def test_the_tap_says_how_much_of_its_range_is_read_and_the_whole_runs_eta() -> None:
    """A year's range: after 10 minutes the run has read 30 days, so the other 335 take
    about 1 h 52 min at that pace; lines come at most every 30 s."""
    start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    progress = RangeProgress(start, start + dt.timedelta(days=365), now=0.0)
    thirty_days = start + dt.timedelta(days=30)
    assert progress.line(start + dt.timedelta(hours=1), 10, now=29.0) is None  # too soon
    line = progress.line(thirty_days, 1_234_567, now=600.0)
    assert line == (
        "read up to 2024-01-31T00:00Z: 8.2% of this run's range (2024-01-01T00:00Z .. "
        "2024-12-31T00:00Z), 1,234,567 events (about 15,020,565 in the whole range at this "
        "density); at this run's pace (72.0 hours of history a "
        "minute) the rest takes about 1 h 52 min (by hours of history, not events)"
    )
    assert progress.line(thirty_days, 1_234_567, now=620.0) is None
    end = start + dt.timedelta(days=365)
    assert progress.line(end, 2_000_000, now=700.0) == (
        "read up to 2024-12-31T00:00Z: 100.0% of this run's range (2024-01-01T00:00Z .. "
        "2024-12-31T00:00Z), 2,000,000 events; all of the range read"
    )
    slow = RangeProgress(start, start + dt.timedelta(days=3650), now=0.0)
    line = slow.line(start + dt.timedelta(hours=1), 5, now=3600.0)
    assert line is not None and line.endswith(
        "the rest takes about 3649 d 23 h (by hours of history, not events)"
    )
    fast = RangeProgress(start, start + dt.timedelta(days=10), now=0.0)
    line = fast.line(start + dt.timedelta(days=9), 5, now=31.0)
    assert line is not None and line.endswith(
        "the rest takes less than a minute (by hours of history, not events)"
    )
