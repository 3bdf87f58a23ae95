"""Dead-letter and dry-run files: JSON lines, user-only permissions, appended, created lazily."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson


class LocalFileError(Exception):
    """A file the run writes (dead letters, dry-run payloads) cannot be written."""


class JsonLinesFile:
    """Append-only JSONL file, safe from several threads, flushed to disk on `sync()`.

    Opened on the first write, so a run that writes nothing leaves no file (and leaves an
    earlier run's file as it was). `replace=True` starts the file afresh on that first write
    instead of appending to an earlier run's lines.
    """

    def __init__(self, path: Path, *, replace: bool = False) -> None:
        self.path = path
        self._mode = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_APPEND)
        self.lines_written = 0
        self._file: IO[bytes] | None = None
        self._lock = threading.Lock()

    def write_line(self, line: bytes) -> None:
        with self._lock, self._errors_named():
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, self._mode, 0o600)
                os.fchmod(fd, 0o600)
                self._file = os.fdopen(fd, "ab")
            self._file.write(line + b"\n")
            self.lines_written += 1

    def sync(self) -> None:
        """Make every line written so far durable (before a STATE that depends on them)."""
        with self._lock, self._errors_named():
            if self._file is not None:
                self._file.flush()
                os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock, self._errors_named():
            if self._file is not None:
                file, self._file = self._file, None
                with file:
                    file.flush()
                    os.fsync(file.fileno())

    @contextlib.contextmanager
    def _errors_named(self) -> Iterator[None]:
        try:
            yield
        except OSError as error:
            msg = (
                f"cannot write {self.path} ({error.strerror or error}); check the path and "
                "the disk it is on (free space, quota, permissions)"
            )
            raise LocalFileError(msg) from error


class DeadLetters:
    """Records (or mapped events) that must not or could not be sent, with the reason."""

    def __init__(self, path: Path) -> None:
        self.file = JsonLinesFile(path)

    @property
    def count(self) -> int:
        return self.file.lines_written

    def add_record(self, stream: str, reason: str, record: dict[str, Any]) -> None:
        self.file.write_line(
            orjson.dumps({"reason": reason, "stream": stream, "record": record}, default=str)
        )

    def add_event(self, reason: str, event: bytes, posthog_answer: str | None = None) -> None:
        """An already encoded PostHog event that PostHog refused (or could never accept)."""
        entry: dict[str, Any] = {"reason": reason, "event": orjson.Fragment(event)}
        if posthog_answer is not None:
            entry["posthog_answer"] = posthog_answer
        self.file.write_line(orjson.dumps(entry))
