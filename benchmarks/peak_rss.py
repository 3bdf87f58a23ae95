"""Run a command with inherited stdin/stdout and report its peak RSS and CPU time.

Usage: python -m benchmarks.peak_rss REPORT_FILE -- COMMAND [ARGS...]
REPORT_FILE gets one line: peak RSS in bytes, then user+system CPU seconds.

The kernel's own high-water mark (getrusage of the finished child) is exact, unlike polling.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    report, separator, *command = argv
    if separator != "--" or not command:
        raise SystemExit(__doc__)
    returncode = subprocess.call(command)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_seconds = usage.ru_utime + usage.ru_stime
    Path(report).write_text(f"{usage.ru_maxrss * 1024} {cpu_seconds:.3f}\n")
    return returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
