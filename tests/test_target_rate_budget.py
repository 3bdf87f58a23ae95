"""PostHog's agreed speed is shared by every run using one registry (SQLite or PostgreSQL)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from target_posthog.rate_budget import SharedThrottle
from target_posthog.registry import AliasRegistry

pytestmark = pytest.mark.timeout(120)

# A run's delivery: reserves `batches` slots of `events` each, sleeping until each starts;
# prints [slot start, moment the wait ended] for each.
_RUN = """
import json, sys, threading, time
from target_posthog.rate_budget import SharedThrottle
from target_posthog.registry import AliasRegistry
registry = AliasRegistry(sys.argv[1])
throttle = SharedThrottle(int(sys.argv[2]), threading.Event(), registry.database)
print("ready", flush=True)
sys.stdin.readline()
slots = []
for _ in range(int(sys.argv[3])):
    start = throttle.reserve(int(sys.argv[4]))
    throttle.sleep_until(start)
    slots.append([start, time.time()])
print(json.dumps(slots), flush=True)
registry.close()
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "aliases.sqlite")
    return request.getfixturevalue("postgres_server").create_database()


def test_three_runs_share_one_speed_slot_after_slot(location: str) -> None:
    """Three runs at 6,000 events/min each configured: their 20-event batches take turns in
    one budget (each slot 0.2 s, none overlapping), so together they go at 6,000/min, not
    18,000; each run waited for its slot."""
    per_minute, batches, events = 6_000, 4, 20
    cost = events / (per_minute / 60)
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", _RUN, location, str(per_minute), str(batches), str(events)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for run in runs:
        assert run.stdout is not None and run.stdout.readline() == "ready\n"
    for run in runs:
        assert run.stdin is not None
        run.stdin.write("\n")
        run.stdin.flush()
    slots = []
    for run in runs:
        assert run.stdout is not None
        slots += json.loads(run.stdout.readline())
        assert run.wait(timeout=60) == 0
    slots.sort()
    assert len(slots) == 12
    for (start, waited_until), (following, _) in itertools.pairwise(slots):
        assert following - start == pytest.approx(cost, abs=1e-6), "slots overlap or gap"
        assert waited_until >= start - 1e-3, "a batch went before its slot"
    span = slots[-1][0] + cost - slots[0][0]
    assert span == pytest.approx(12 * cost, abs=1e-6)  # 12 batches at one shared speed


def test_without_a_speed_nothing_is_reserved_or_waited(tmp_path: Path) -> None:
    registry = AliasRegistry(tmp_path / "aliases.sqlite")
    throttle = SharedThrottle(None, threading.Event(), registry.database)
    throttle.wait(10_000)  # returns at once
    assert registry.database.read("SELECT count(*) FROM rate_slots") == [(0,)]
    registry.close()


def test_a_stale_slot_far_ahead_is_ignored(tmp_path: Path) -> None:
    """A slot reserved past the bound (a clock that jumped back) does not stall new runs."""
    registry = AliasRegistry(tmp_path / "aliases.sqlite")
    throttle = SharedThrottle(60, threading.Event(), registry.database)
    with registry.database.transaction() as tx:
        tx.execute("UPDATE rate_slots SET next_slot = next_slot + 1e9")
    assert throttle.reserve(1) <= time.time() + 1
    registry.close()
