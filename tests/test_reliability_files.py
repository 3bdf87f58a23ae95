"""The files the target keeps across runs, under kills: the alias registry (SQLite, WAL,
transactions) and the dead-letter file must be whole and readable after any SIGKILL, and a
resumed run must add to them without damage.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from target_posthog.registry_store import open_database

from tests.pipeline_harness import (
    AMPLITUDE_KEY,
    AMPLITUDE_SECRET,
    FIGURES,
    POSTHOG_KEY,
    KillSwitch,
    assert_aliases_once,
    assert_delivered_exactly,
    assert_registry_intact,
    build_drill_store,
    drill_pipeline,
    why_unsendable,
)
from tests.testbed.amplitude import AmplitudeStandIn
from tests.testbed.posthog import PostHogStandIn

pytestmark = pytest.mark.timeout(120)

SEED = 611
BATCH = 400  # aliases recorded per transaction by the writer below

# A process that records batches of aliases through the target's own registry, printing a
# line after each commit; the drill SIGKILLs it mid-stream.
_REGISTRY_WRITER = f"""
import sys
from pathlib import Path
from target_posthog.registry import AliasRegistry, PendingAlias

registry = AliasRegistry(sys.argv[1])
first_batch = int(sys.argv[2])
for batch in range(first_batch, first_batch + 1000):
    registry.record_confirmed(
        [PendingAlias(f"device-{{batch}}-{{n}}", f"user-{{batch}}", "2024-05-01T00:00:00Z")
         for n in range({BATCH})])
    print(batch, flush=True)
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("kill_after", random.Random(SEED).sample(range(1, 40), 4))
def test_registry_killed_mid_write_is_intact_with_whole_transactions(
    tmp_path: Path, kill_after: int, backend: str, request: pytest.FixtureRequest
) -> None:
    """SIGKILL while the registry is written: never corrupt, never half a transaction, every
    acknowledged commit kept; a second writer then carries on from it. On SQLite (a file) and
    on PostgreSQL (a connection cut mid-transaction)."""
    path = tmp_path / "aliases.sqlite"
    registry = (
        str(path)
        if backend == "sqlite"
        else request.getfixturevalue("postgres_server").create_database()
    )
    acknowledged = 0
    for first_batch in (0, 1000):  # killed once, then killed again after reopening the file
        writer = subprocess.Popen(
            [sys.executable, "-c", _REGISTRY_WRITER, registry, str(first_batch)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert writer.stdout is not None
        for _ in range(kill_after):
            assert writer.stdout.readline(), "the writer stopped early"
        writer.send_signal(signal.SIGKILL)  # mid-way through the next transaction, likely
        writer.wait(timeout=30)
        acknowledged += kill_after
        FIGURES.kills_survived += 1

        if backend == "sqlite":
            assert_registry_intact(path)
        database = open_database(registry, read_only=True)
        rows = dict(database.read("SELECT user_id, count(*) FROM aliases GROUP BY user_id"))
        database.close()
        assert all(count == BATCH for count in rows.values()), "half a transaction was kept"
        assert len(rows) >= acknowledged, "an acknowledged commit was lost"


@pytest.mark.parametrize("kill_at_batch", random.Random(SEED + 1).sample(range(3, 20), 3))
def test_dead_letter_file_stays_valid_jsonl_across_a_kill_and_resume(
    tmp_path: Path, kill_at_batch: int
) -> None:
    """Many bad records, so the dead-letter file is being written when the target dies; the
    resumed run appends to it: every line must still be one whole JSON object."""
    store = build_drill_store(tmp_path / "export", invalid_fraction=0.3, seed=64)
    bad = {r["uuid"] for r in store.iter_events() if why_unsendable(r)}
    with (
        AmplitudeStandIn(store, AMPLITUDE_KEY, AMPLITUDE_SECRET) as api,
        PostHogStandIn(api_key=POSTHOG_KEY) as posthog,
    ):
        pipeline = drill_pipeline(tmp_path / "run", api, posthog)
        switch = KillSwitch("target")
        posthog.on_stored = lambda r: switch.fire() if r.seq == kill_at_batch else None
        running = pipeline.start()
        switch.arm(running)
        killed = running.wait()
        posthog.on_stored = None
        assert switch.fired.is_set(), killed.describe()
        resumed = pipeline.run(killed.last_state)
        assert resumed.ok, resumed.describe()
        assert_delivered_exactly(posthog, store, excluded=bad)
        assert_aliases_once(posthog, store)
    FIGURES.kills_survived += 1

    path = Path(pipeline.target_config["dead_letter_path"])
    lines = path.read_bytes().splitlines()
    broken = []
    for number, line in enumerate(lines, start=1):
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError:
            broken.append(number)
    assert not broken, f"dead-letter lines {broken} of {len(lines)} are not whole JSON objects"
    letters = [orjson.loads(line) for line in lines]
    # Each bad record once, though the resumed run read again the window the kill cut short.
    assert sorted(letter["record"]["uuid"] for letter in letters) == sorted(bad)
    FIGURES.dead_lettered += len(letters)
