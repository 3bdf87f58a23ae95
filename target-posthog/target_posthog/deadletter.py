"""Dead-letter and dry-run files: JSON lines, user-only permissions, created lazily."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson
from singer_plugin_common import exact_json

logger = logging.getLogger("target-posthog")


class LocalFileError(Exception):
    """A file the run writes (dead letters, dry-run payloads, STATE on stdout) cannot be
    written."""


class JsonLinesFile:
    """JSONL file, appended to, safe from several threads, flushed to disk on `sync()`.

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

    def existing_lines(self) -> Iterator[bytes]:
        """The lines the file holds (none if there is no file), read one at a time."""
        with self._errors_named("read"):
            try:
                file = self.path.open("rb")
            except FileNotFoundError:
                return
            with file:
                for line in file:
                    yield line.rstrip(b"\n")

    def open_now(self) -> None:
        """Open (with `replace`: empty) the file now, even if nothing is ever written."""
        with self._lock, self._errors_named():
            self._opened()

    def write_line(self, line: bytes) -> None:
        with self._lock, self._errors_named():
            self._opened().write(line + b"\n")
            self.lines_written += 1

    def _opened(self) -> IO[bytes]:
        """The open file (caller holds the lock)."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, self._mode, 0o600)
            os.fchmod(fd, 0o600)
            self._file = os.fdopen(fd, "ab")
        return self._file

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
    def _errors_named(self, doing: str = "write") -> Iterator[None]:
        try:
            yield
        except OSError as error:
            msg = (
                f"cannot {doing} {self.path} ({error.strerror or error}); check the path and "
                "the disk it is on (free space, quota, permissions)"
            )
            raise LocalFileError(msg) from error


def reason_kind(reason: str) -> str:
    """A reason without its particulars, so the run's summary counts letters by kind and
    shows no record's values: the part before ':', ';' or ' (', quoted values as ..., numbers
    as N ("event is N bytes once mapped", "person property ... of ... is N bytes")."""
    head = _QUOTED.sub("...", reason).split(":", 1)[0].split(";", 1)[0].split(" (", 1)[0]
    return _NUMBER.sub("N", head.strip())


_NUMBER = re.compile(r"\d+")
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def _without_values(reason: str) -> str:
    """A reason fit for a log line: singer-sdk's validation messages quote the record's
    values, so only their error's name is logged, and a reason quoting values (ids, property
    names) gives only its kind (the whole reason is in the letter)."""
    if reason.startswith(SDK_REFUSAL):
        name = reason.removeprefix(SDK_REFUSAL).split(":", 1)[0]
        return f"{SDK_REFUSAL}{name} (the reason in full is in the letter)"
    if _QUOTED.search(reason):
        return f"{reason_kind(reason)} (the reason in full is in the letter)"
    return reason


SDK_REFUSAL = "refused by singer-sdk: "


def _record_key(record: dict[str, Any]) -> str:
    """How a log line names a record without its content: its uuid, else its place in the
    export (tap-amplitude's unreadable_lines: member and line)."""
    if type(record.get("uuid")) is str:
        return f"uuid {record['uuid'][:64]}"
    if "member" in record and "line_number" in record:
        return f"{str(record['member'])[:200]}, line {record['line_number']}"
    return "without a uuid"


class DeadLetters:
    """Records (or mapped events) that must not or could not be sent, with the reason.

    Each letter is in the file once: a resumed run reads again the window it was in when it
    stopped, and the letters that window already produced are not written a second time.
    """

    def __init__(self, path: Path) -> None:
        self.file = JsonLinesFile(path)
        self.count = 0  # letters of this run, including those the file already held
        self.already_in_file = 0
        self.by_reason: Counter[str] = Counter()  # reason_kind(reason) -> letters of this run
        self._in_file: set[bytes] | None = None  # digests of the file's lines, read once

    def add_record(self, stream: str, reason: str, record: dict[str, Any]) -> None:
        """A record as the target received it (so a user can fix and re-feed it)."""
        letter = {"reason": reason, "stream": stream, "record": record}
        kind = reason_kind(reason)
        if not self.by_reason[kind]:
            # One line per kind, naming the record by its key (never its content); the rest
            # of the kind are counted in the run's summary.
            logger.warning(
                "dead-lettered %s record %s: %s (to %s; further records of this kind are "
                "counted in the summary)",
                stream,
                _record_key(record),
                _without_values(reason),
                self.file.path,
            )
        self.by_reason[kind] += 1
        self.add_line(exact_json.dumps(letter, default=str))

    def add_event(self, reason: str, event: bytes, posthog_answer: str | None = None) -> None:
        """An already encoded PostHog event that PostHog refused (or could never accept)."""
        entry: dict[str, Any] = {"reason": reason, "event": orjson.Fragment(event)}
        if posthog_answer is not None:
            entry["posthog_answer"] = posthog_answer
        self.by_reason[reason_kind(reason)] += 1
        self.add_line(orjson.dumps(entry))

    def add_line(self, line: bytes) -> bool:
        """Write ``line`` unless the file holds it already; True when written."""
        digest = hashlib.sha1(line, usedforsecurity=False).digest()
        in_file = self._letters_in_file()
        self.count += 1
        if digest in in_file:
            self.already_in_file += 1
            return False
        self.file.write_line(line)
        in_file.add(digest)
        return True

    def reasons(self) -> str:
        """``"3 no event_type, 1 neither user_id nor device_id"``, most frequent first."""
        return ", ".join(f"{n} {kind}" for kind, n in self.by_reason.most_common())

    def _letters_in_file(self) -> set[bytes]:
        if self._in_file is None:
            self._in_file = {
                hashlib.sha1(line, usedforsecurity=False).digest()
                for line in self.file.existing_lines()
            }
        return self._in_file
