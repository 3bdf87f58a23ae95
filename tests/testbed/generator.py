"""Realistic Amplitude exports for tests, benchmarks and the bundled sample.

The generator itself lives in `events.py` and the on-disk export in `store.py`; this module is
the public face named by docs/testbed-contract.md, plus the command line:

    python -m tests.testbed.generator --events 3000 --hours 72 --start 2024-03-01T00 \
        --seed 7 --out sample/amplitude-export [--zip export.zip]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.testbed.events import ExportSpec, generate_events
from tests.testbed.store import ExportStore, Member

__all__ = ["ExportSpec", "ExportStore", "Member", "generate_events", "main", "parse_hour"]


def parse_hour(text: str) -> datetime:
    """`2024-01-01T00` (Amplitude's style, also with `:MM` or a full ISO time) as a UTC hour."""
    for pattern in ("%Y-%m-%dT%H", "%Y%m%dT%H"):
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=UTC)
        except ValueError:
            pass
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.testbed.generator",
        description="Write a realistic Amplitude export (hourly .json.gz members) to a folder.",
    )
    parser.add_argument("--events", type=int, required=True, help="number of records")
    parser.add_argument("--hours", type=int, required=True, help="number of whole hours")
    parser.add_argument("--start", type=parse_hour, required=True, help="first hour, 2024-01-01T00")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--project-id", type=int, default=187520)
    parser.add_argument("--users", type=int, default=None, help="population size (default: auto)")
    parser.add_argument("--invalid-fraction", type=float, default=0.0)
    parser.add_argument("--max-lines-per-member", type=int, default=50_000)
    parser.add_argument("--out", type=Path, required=True, help="folder for the member files")
    parser.add_argument("--zip", type=Path, default=None, help="also write the Export API zip")
    args = parser.parse_args(argv)

    spec = ExportSpec(
        start=args.start,
        hours=args.hours,
        events=args.events,
        seed=args.seed,
        project_id=args.project_id,
        users=args.users,
        invalid_fraction=args.invalid_fraction,
    )
    began = time.monotonic()
    store = ExportStore.build(args.out, spec, max_lines_per_member=args.max_lines_per_member)
    members = store.members()
    print(
        f"wrote {store.event_count} events in {len(members)} members over "
        f"{len(store.hours())} hours to {args.out} ({time.monotonic() - began:.1f} s)",
        file=sys.stderr,
    )
    if args.zip:
        size = store.write_zip(args.zip, spec.start, spec.end)
        print(f"wrote {args.zip} ({size} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
