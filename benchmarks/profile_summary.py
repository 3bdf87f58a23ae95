"""Summarise a py-spy `raw` profile (collapsed stacks) written by `benchmarks.run --profile`.

Usage: python -m benchmarks.profile_summary PROFILE.txt [--top N]

Prints, per function, the share of samples spent in it (self) and under it (inclusive).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# py-spy frames look like `name (path/to/file.py:LINE)`; the line differs per call site.
FRAME_LINE = re.compile(r":\d+\)$")


def frame_name(frame: str) -> str:
    frame = FRAME_LINE.sub(")", frame.strip())
    name, _, location = frame.partition(" (")
    return f"{name} ({Path(location.rstrip(')')).name})" if location else name


def summarise(path: Path) -> tuple[int, Counter[str], Counter[str]]:
    """(samples, samples per innermost function, samples per function anywhere on the stack)."""
    total, own, under = 0, Counter[str](), Counter[str]()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        frames = [frame_name(f) for f in stack.split(";")]
        total += samples
        own[frames[-1]] += samples
        for name in set(frames):
            under[name] += samples
    return total, own, under


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    total, own, under = summarise(args.profile)
    print(f"{total} samples")
    for title, counts in (("self", own), ("inclusive", under)):
        print(f"\n{title}:")
        for name, samples in counts.most_common(args.top):
            print(f"  {100 * samples / max(total, 1):5.1f}%  {name}")


if __name__ == "__main__":
    main()
