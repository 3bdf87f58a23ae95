"""Run a command with inherited stdin/stdout and report its peak RSS.

Usage: python -m benchmarks.peak_rss REPORT_FILE -- COMMAND [ARGS...]

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
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    Path(report).write_text(f"{peak_kib * 1024}\n")
    return returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
