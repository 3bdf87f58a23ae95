"""Persons and groups end up in PostHog as Amplitude shows them: whole migrations (one run,
two incremental runs, a run killed and resumed) over the export of tests/persons_harness.py,
compared with what Amplitude shows, in the PostHog stand-in's final persons and groups."""

from __future__ import annotations

import itertools
import signal
from collections import defaultdict
from pathlib import Path

import orjson

from tests.persons_harness import (
    PLACEHOLDERS,
    assert_persons_and_groups_match,
    build_export,
    updates_in,
)
from tests.target_support import (
    SCHEMA,
    messages_with_states,
    record,
    run_target,
    start_target,
    state,
    target_config,
)
from tests.target_support import (
    posthog as posthog,  # the fixture
)
from tests.testbed.posthog import PostHogStandIn


def test_export_has_what_breaks_naive_migrations() -> None:
    """The scenario is what it claims: late uploads, a shared device, placeholders, groups."""
    records = build_export().records
    times = [r["event_time"] for r in records]
    late = sum(1 for a, b in itertools.pairwise(times) if b < a)
    assert late > 50
    users_of_device = defaultdict(set)
    for r in records:
        if r["user_id"] and r["user_id"] not in PLACEHOLDERS:
            users_of_device[r["device_id"]].add(r["user_id"])
    assert users_of_device["dev-0-0"] == {"user-0", "user-1"}
    assert {r["user_id"] for r in records} >= {"undefined", "null"}
    assert sum(1 for r in records if r.get("group_properties")) > 100


def test_whole_migration_ends_with_amplitudes_persons_and_groups(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    export = build_export()
    config = target_config(tmp_path, posthog, concurrency=4, batch_size=20)
    first = run_target(config, messages_with_states(export.records, 40), tmp_path, posthog)
    assert first.returncode == 0, first.stderr
    assert_persons_and_groups_match(posthog, export)
    sent = len(updates_in(posthog))
    assert sent > 0
    # A rerun over the same range sends the events again (same uuids) but no update.
    again = run_target(config, messages_with_states(export.records, 40), tmp_path, posthog)
    assert again.returncode == 0, again.stderr
    assert len(updates_in(posthog)) == sent
    assert_persons_and_groups_match(posthog, export)


def test_two_incremental_runs_over_the_range_end_right(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    export = build_export(seed=9)
    half = len(export.records) // 2
    config = target_config(tmp_path, posthog, concurrency=4, batch_size=20)
    for part in (export.records[:half], export.records[half:]):
        run = run_target(config, messages_with_states(part, 30), tmp_path, posthog)
        assert run.returncode == 0, run.stderr
    assert_persons_and_groups_match(posthog, export)


def test_killed_and_resumed_run_ends_right(tmp_path: Path) -> None:
    export = build_export(seed=13)
    records = export.records
    every = 25
    with PostHogStandIn(api_key=target_config(tmp_path)["api_key"], latency=0.02) as slow:
        config = target_config(tmp_path, slow, concurrency=2, batch_size=10)
        process = start_target(config, tmp_path)
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(b"".join(orjson.dumps(m) + b"\n" for m in messages_with_states(
            records, every)))  # fmt: skip
        process.stdin.flush()
        states = [orjson.loads(process.stdout.readline()) for _ in range(5)]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        done = states[-1]["done"]
        assert 0 < done < len(records)
        rest = [SCHEMA]
        for n, value in enumerate(records[done:], start=done + 1):
            rest.append(record(value))
            if n % every == 0 or n == len(records):
                rest.append(state({"done": n}))
        resumed = run_target(config, rest, tmp_path, slow)
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.states[-1] == {"done": len(records)}
        assert_persons_and_groups_match(slow, export)
