"""What a migration says while it runs and at its end: progress lines, the dry run's summary,
and its payload file, always that run's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from target_posthog.progress import Counts, Progress

from tests.target_support import POSTHOG_KEY, SCHEMA, record, run_target, tap_records, target_config
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
    assert "ETA for what was received 1 min 10 s" in line  # 6,980 left at 100/s
    later = Counts(
        received=10_000, events_sent=3_050, aliases_sent=650, updates_sent=0, dead_letters=20
    )
    slower = progress.line(later, in_flight=1, now=20.0)  # 100 in 10 s: the recent speed
    assert "10 events/s" in slower and "ETA for what was received 11 min 33 s" in slower
    unlimited = Progress(None, now=0.0).line(counts, in_flight=0, now=10.0)
    assert "(no speed limit)" in unlimited and "ETA for what was received 19 s" in unlimited


def test_a_dry_run_says_nothing_was_sent_and_always_replaces_its_payload_file(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    payloads = tmp_path / "payloads.jsonl"
    config = target_config(tmp_path, posthog, dry_run_path=str(payloads))
    first = run_target(config, [SCHEMA, *(record(r) for r in tap_records(40))], tmp_path)
    assert first.returncode == 0, first.stderr
    assert "done: dry run: nothing sent; " in first.stderr
    assert "events sent" not in first.stderr and "requests" not in first.stderr.split("done:")[1]
    assert sum(len(orjson.loads(line)["batch"]) for line in payloads.read_bytes().splitlines())
    assert posthog.event_count == 0

    # A range with no events: the file is this run's (empty), not the last run's payloads.
    empty = run_target(config, [SCHEMA], tmp_path)
    assert empty.returncode == 0, empty.stderr
    assert payloads.exists() and payloads.read_bytes() == b""
