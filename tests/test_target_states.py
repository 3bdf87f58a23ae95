"""STATE at the tap's hourly rate (issue 16): frequent STATEs neither cut batches short nor pile up
in memory, and each still comes out only once everything before it is confirmed."""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from target_posthog.client import Answer
from target_posthog.deadletter import DeadLetters
from target_posthog.delivery import Delivery, Throttle
from target_posthog.mapping import map_record

from tests.target_support import (
    messages_with_states,
    posthog,
    run_target,
    tap_records,
    target_config,
)
from tests.testbed.posthog import PostHogStandIn

__all__ = ["posthog"]  # a fixture, used by name


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return tap_records(600, seed=16)


def test_a_state_after_every_record_leaves_batches_full(
    tmp_path: Path, posthog: PostHogStandIn, records: list[dict[str, Any]]
) -> None:
    posthog.latency = 0.01
    config = target_config(tmp_path, posthog, batch_size=50, concurrency=2)
    run = run_target(config, messages_with_states(records, 1), tmp_path, posthog)
    assert run.returncode == 0, run.stderr
    sizes = [r.event_count for r in posthog.requests]  # events and aliases
    assert sum(sizes) >= len(records)
    # A record's events (an alias and its event) stay in one batch, so a batch may hold one
    # event less than batch_size; a STATE never ends one early.
    assert len(sizes) <= math.ceil(sum(sizes) / 49), f"batches cut short: {sizes}"
    done = [s["done"] for s in run.states]
    assert done == sorted(done) and done[-1] == len(records)
    assert len(done) <= len(sizes) + 1, "more STATE lines than batch boundaries"
    for emitted, stored in zip(run.states, run.stored_when_emitted, strict=True):
        before = {e["uuid"] for r in records[: emitted["done"]] for e in map_record(r).events}
        assert before <= stored, f"STATE {emitted} was emitted before its records were stored"


class _Stores:
    """The calls Delivery makes on the alias registry and the profiles store (neither has
    anything to record here: the events carry no alias and no profile update)."""

    def record_confirmed(self, aliases: list[Any]) -> None:
        assert not aliases

    def record_sent(self, profiles: list[Any]) -> None:
        assert not profiles

    def sync(self) -> None:
        pass


def test_states_waiting_on_unconfirmed_batches_stay_one_per_batch(tmp_path: Path) -> None:
    release = threading.Event()
    emitted: list[dict] = []

    def send(events: memoryview) -> Answer:
        release.wait(30)
        return Answer(200, "ok")

    stopping = threading.Event()
    delivery = Delivery(
        sender=send,
        registry=_Stores(),  # type: ignore[arg-type]
        profiles=_Stores(),  # type: ignore[arg-type]
        dead_letters=DeadLetters(tmp_path / "dead.jsonl"),
        emit_state=emitted.append,
        concurrency=2,
        batch_size=10,
        throttle=Throttle(None, stopping),
        stopping=stopping,
        logger=logging.getLogger("test"),
    )
    try:
        # Four batches fill every slot (2 sending, 2 queued) and a fifth is open: 45 STATEs.
        for n in range(1, 46):
            position = delivery.next_position()
            delivery.add(position, [orjson.dumps({"n": n})], [None])
            delivery.add_state({"done": n})
        with delivery._lock:
            waiting = [value["done"] for _, value in delivery._pending_states]
        assert emitted == []
        assert waiting == [10, 20, 30, 40, 45]  # the last STATE before each batch boundary
        release.set()
        delivery.finish()
    finally:
        release.set()
        stopping.set()
    assert emitted[-1] == {"done": 45}
    assert [s["done"] for s in emitted] == sorted(s["done"] for s in emitted)
