"""Fewer malloc arenas for the delivery threads: a flat peak RSS, whatever their timing.

glibc gives threads that contend for malloc arenas of their own, up to 8 per core; the
delivery threads free their batches (about 2 MB each) in whichever arena they were allocated,
so freed memory is spread over many arenas and RSS grows with how the threads happened to
interleave, not with what is held. Measured on the hourly-checkpoint benchmark's dense input
(200,000 events, 24 hours, concurrency 16; target alone, 2 cores): peak RSS 136 MiB with one
STATE a window against 177 to 180 MiB with one an hour by default; 123 to 125 against 107 to
109 MiB with 2 arenas, at the same speed (benchmarks/README.md, "Hourly checkpoints").
Source for the setting: glibc's manual, "Memory Allocation Tunables" (glibc.malloc.arena_max,
also read from the environment variable MALLOC_ARENA_MAX) and mallopt(3) (M_ARENA_MAX = -8).
"""

from __future__ import annotations

import ctypes
import os
import sys

ARENAS = 2
_M_ARENA_MAX = -8  # from glibc's malloc.h


def cap_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas at `arenas`, before any thread starts; True if it was done.

    Nothing is changed where the user chose already (MALLOC_ARENA_MAX, or GLIBC_TUNABLES naming
    glibc.malloc.arena_max), or where the C library is not glibc (musl, macOS, Windows)."""
    if "MALLOC_ARENA_MAX" in os.environ or "arena_max" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # a C library without mallopt: nothing to tune
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))
