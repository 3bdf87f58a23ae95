"""STATE out of target-posthog: written to stdout once delivery vouches for it, and what it
means for the person running the migration (checkpoint lines, where the next run resumes)."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable

import orjson

from target_posthog.deadletter import LocalFileError
from target_posthog.progress import Checkpoints, Counts, bookmarks_text


class StateOutput:
    """Receives each STATE the delivery watermark releases (`emit`, or `withhold` in a dry
    run), writes it to stdout whole, and says each checkpoint once.

    `counts` is called for each checkpoint line. Thread-safe: delivery threads call `emit`.
    """

    def __init__(
        self, *, dry_run: bool, logger: logging.Logger, counts: Callable[[], Counts]
    ) -> None:
        self._dry_run = dry_run
        self._logger = logger
        self._counts = counts
        self._checkpoints = Checkpoints(dry_run=dry_run)
        self._lock = threading.Lock()
        self._reader_gone = False
        self.last_emitted: dict | None = None
        self.last_checkpoint: dict | None = None  # emitted, or withheld in a dry run

    def emit(self, state: dict) -> None:
        """Write `state` as one Singer STATE line.

        Raises:
            LocalFileError: nothing reads stdout any more (said once; later calls are no-ops).
        """
        line = orjson.dumps(state, option=orjson.OPT_APPEND_NEWLINE)
        with self._lock:
            if self._reader_gone:
                return  # said once already; the run is stopping
            try:
                write_stdout(line)
            except BrokenPipeError as exc:
                self._reader_gone = True
                raise LocalFileError(
                    "cannot write STATE to stdout: nothing reads it any more (broken pipe). "
                    "The next run resumes from the last STATE that was stored"
                ) from exc
            self.last_emitted = state
            self._say_checkpoint(state)

    def withhold(self, state: dict) -> None:
        """Dry run: nothing reached PostHog, so no bookmark may move past anything."""
        self._say_checkpoint(state)

    def _say_checkpoint(self, state: dict) -> None:
        self.last_checkpoint = state
        line = self._checkpoints.line(state, self._counts())
        if line:
            self._logger.info(line)

    def resume_point(self) -> str:
        """Where the next run starts, in words: from the last STATE this run emitted, or an
        earlier one: Meltano, when it is being stopped too, drops the target's last lines
        unread (meltano 4.4 cancels its reader as soon as the target exits)."""
        if self._dry_run:
            return "dry run: nothing sent, no bookmark moved"
        state = self.last_emitted
        if state is None:
            return "the next run resumes where this one started (no new STATE was confirmed)"
        where = bookmarks_text(state) or "the last STATE emitted"
        return (
            f"the next run resumes from {where} or earlier (the last STATE emitted; "
            "`meltano state get` shows the one stored)"
        )


def write_stdout(data: bytes) -> None:
    """All of `data` on stdout, in order, even when a write to the pipe takes only part of it.

    That happens when the process is stopped and continued mid-write (SIGSTOP/SIGCONT, a
    laptop's sleep) and the line is larger than the pipe's atomic size (4 KiB): Python 3.11's
    buffered stdout was measured mangling such STATE lines; os.write calls that carry on from
    where the last one stopped do not.
    """
    sys.stdout.flush()  # anything written through the text layer goes first
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # stdout replaced in-process (tests)
        sys.stdout.write(data.decode())
        sys.stdout.flush()
        return
    with memoryview(data) as view:
        written = 0
        while written < len(view):
            written += os.write(fd, view[written:])
