"""target-posthog caps glibc's malloc arenas before its delivery threads start (allocator.py):
many threads otherwise each get an arena of their own, and peak RSS grows with how they
interleave (measured: benchmarks/README.md, "Hourly checkpoints")."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Sixteen threads (the benchmark's concurrency) each allocate and free 2 MB blocks, as the
# delivery threads do with batches, then glibc's malloc_stats() lists the arenas on stderr.
THREADS = """
import ctypes, sys, threading
if sys.argv[1] == "capped":
    from target_posthog.allocator import cap_malloc_arenas
    assert cap_malloc_arenas()
barrier = threading.Barrier(16)
def work():
    barrier.wait()
    for _ in range(20):
        block = bytearray(2 * 1024 * 1024)
        del block
threads = [threading.Thread(target=work) for _ in range(16)]
for thread in threads: thread.start()
for thread in threads: thread.join()
ctypes.CDLL(None).malloc_stats()
"""

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
    reason="needs glibc",
)


def arenas(mode: str, **env: str) -> int:
    environment = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX",)}
    environment.update(env)
    run = subprocess.run(
        [sys.executable, "-c", THREADS, mode],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=True,
    )
    return sum(1 for line in run.stderr.splitlines() if line.startswith("Arena "))


@glibc
def test_the_target_runs_its_threads_in_at_most_two_malloc_arenas() -> None:
    assert arenas("uncapped") > 2  # what glibc does by default: the test can tell
    assert arenas("capped") <= 2


@glibc
def test_a_users_own_malloc_arena_max_stands(monkeypatch: pytest.MonkeyPatch) -> None:
    from target_posthog.allocator import cap_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert cap_malloc_arenas() is False
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=4")
    assert cap_malloc_arenas() is False
    assert arenas("uncapped", MALLOC_ARENA_MAX="4") <= 4
