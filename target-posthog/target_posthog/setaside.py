"""Unreadable export lines (tap-amplitude's `unreadable_lines` stream), kept byte for byte.

tap-amplitude sends each export line that is not one JSON object as a record of its second
stream (shape in tap-amplitude's setaside.py: member, line_number, reason, line_base64, hour,
...). Nothing of it can go to PostHog, and nothing of it may be lost, so the target keeps each
line in two files beside the dead-letter file (``<dead-letter name>`` without ``.jsonl``):

- ``….unreadable-lines.jsonl``: one JSON object per line, the record as received (where the
  line was, why it was set aside, its bytes in base64, its upload hour);
- ``….unreadable-lines.raw``: the lines' exact bytes, each followed by a newline, in the same
  order, ready to be fixed by hand and fed again.

A resumed run re-reads its last window: a line already set aside is not written again. Both
files are made durable before any STATE that covers them is emitted (see Delivery).
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from pathlib import Path
from typing import Any

from singer_plugin_common import exact_json

from target_posthog.deadletter import DeadLetters, JsonLinesFile, reason_kind

STREAM_NAME = "unreadable_lines"


def set_aside_paths(dead_letter_path: Path) -> tuple[Path, Path]:
    """(index, raw bytes) paths next to the dead-letter file."""
    stem = dead_letter_path.name.removesuffix(".jsonl")
    return (
        dead_letter_path.with_name(f"{stem}.unreadable-lines.jsonl"),
        dead_letter_path.with_name(f"{stem}.unreadable-lines.raw"),
    )


class SetAsideLines:
    """The two files above; ``count`` lines of this run (including those already there)."""

    def __init__(self, dead_letter_path: Path) -> None:
        index_path, raw_path = set_aside_paths(dead_letter_path)
        self._index = DeadLetters(index_path)  # its once-only writing, for the index lines
        self.raw = JsonLinesFile(raw_path)
        self.by_reason: Counter[str] = Counter()  # reason_kind(reason) -> lines of this run

    @property
    def count(self) -> int:
        return self._index.count

    @property
    def path(self) -> Path:
        return self._index.file.path

    @property
    def files(self) -> tuple[JsonLinesFile, ...]:
        return (self._index.file, self.raw)

    def add(self, record: dict[str, Any]) -> None:
        """Keep one set-aside line. Raises ValueError when the record holds no line bytes."""
        try:
            line = base64.b64decode(record["line_base64"], validate=True)
        except (KeyError, TypeError, binascii.Error) as exc:
            raise ValueError("no line_base64 holding the line's bytes") from exc
        self.by_reason[reason_kind(str(record.get("reason", "no reason given")))] += 1
        if self._index.add_line(exact_json.dumps(record, default=str)):
            self.raw.write_line(line)

    def describe(self) -> str:
        """``"3 unreadable lines set aside (<path>): 2 not JSON, 1 not an object"``."""
        reasons = ", ".join(f"{n} {kind}" for kind, n in self.by_reason.most_common())
        text = f"{self.count} unreadable lines set aside ({self.path})"
        return f"{text}: {reasons}" if reasons else text

    def close(self) -> None:
        for file in self.files:
            file.close()
