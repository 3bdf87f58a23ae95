"""Fast Singer message reader (orjson on raw bytes) that stops cleanly on SIGTERM/SIGINT.

A signal handler must not do the stopping itself: it runs between any two bytecodes of the
main thread, possibly while a batch is half built. So the handler only records the signal,
and the reader stops at the next line boundary; only while the reader is blocked waiting for
input (a quiet tap) does the handler raise, since nothing is half done there.
"""

from __future__ import annotations

import os
import select
import stat
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import IO, Any

from singer_sdk.singerlib.encoding.base import GenericSingerReader
from singer_sdk.singerlib.exceptions import InvalidInputLine

from target_posthog import exact_numbers
from target_posthog.input_lines import (
    MAX_DEPTH,
    InputLines,
    SetAsideError,
    is_record_line,
    mend,
    nesting_depth,
    unusable_record,
)

_READ_BUFFER_BYTES = 1 << 20
PIPE_BYTES = 1 << 20  # Linux's default ceiling for unprivileged processes (fs.pipe-max-size)


def enlarge_pipe(fd: int, size: int = PIPE_BYTES) -> None:
    """Let the tap run ahead: with Linux's default 64 KiB pipe, the tap blocks on each large
    write until the target has read nearly all of it, then the target waits for the next one,
    and the two work in turns instead of side by side. Best effort (Linux); else unchanged."""
    try:
        import fcntl

        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)
    except (ImportError, AttributeError, OSError):
        pass  # another OS, not a pipe, or a lower limit: the pipe stays as it is


# How long the input is still read (and dropped) after the target stops early: long enough for
# Meltano to stop the tap and forward what it holds, short enough that a tap nobody stops (a
# shell pipeline) is not fed for long.
HAND_OFF_SECONDS = 15
# After a stop request, an input this long without data has been forwarded in full.
QUIET_SECONDS = 2.0

# The child that keeps reading: from stdin to nowhere, until end of input or the deadline.
_DRAIN_INPUT = """
import os, select, sys, time
deadline = time.monotonic() + float(sys.argv[1])
while (left := deadline - time.monotonic()) > 0:
    if select.select([0], [], [], left)[0] and not os.read(0, 1 << 20):
        break
"""


def read_input_to_end(seconds: float = HAND_OFF_SECONDS, quiet: float = QUIET_SECONDS) -> None:
    """After a stop request: read (and drop) the input until it ends or goes quiet for `quiet`
    seconds, for at most `seconds`, in this process, before exiting.

    A stop request reaches the tap too (Ctrl-C goes to the whole job; Meltano forwards SIGTERM
    to both plugins), so the tap's output ends within a moment. Staying alive until Meltano has
    forwarded it all keeps the order Meltano expects. A target that ended first made Meltano 4.4
    stop forwarding; when the tap's output it still held was more than its buffer (as under a
    speed limit, with the tap far ahead), Meltano then never read that output to its end, and
    `meltano run` waited for it forever (measured: 2 stops in 12 of such a run, more on a
    loaded machine). Meltano closes the target's input only once the target has ended, so the
    end of input does not come; a quiet input means everything was forwarded. Best effort:
    without a pipe, nothing is read.
    """
    try:
        if not stat.S_ISFIFO(os.fstat(0).st_mode):
            return
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([0], [], [], min(left, quiet))[0]:
                return  # quiet: the tap has stopped and Meltano forwarded all it held
            if not os.read(0, _READ_BUFFER_BYTES):
                return  # end of input
    except (OSError, ValueError):
        return  # input closed or unreadable: nothing more to wait for


def hand_off_input(seconds: float = HAND_OFF_SECONDS) -> None:
    """Keep the input pipe read, by a short-lived child, after the target stops before its end.

    Whatever writes into the target (Meltano, a shell pipeline's tap) would otherwise hit a
    broken pipe: Meltano 4.4 then prints two long BrokenPipeError tracebacks after the target's
    own last line, and, if its buffer of the tap's output is full when it is asked to stop, waits
    forever for the tap's output to end. The child holds only stdin (not stdout/stderr, whose end
    tells Meltano the target is gone), ignores the stop signals the target has already
    honoured, and exits at end of input (Meltano stops the tap at once when the target ends) or
    after `seconds`. Best effort: without stdin as a pipe, nothing is started.
    """
    try:
        if not stat.S_ISFIFO(os.fstat(0).st_mode):
            return
        # posix_spawn, not subprocess: nothing waits for this child, and it must outlive us.
        os.posix_spawn(
            sys.executable,
            [sys.executable, "-c", _DRAIN_INPUT, str(seconds)],
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
            ],
            setsid=True,  # a Ctrl-C to the job's process group does not end it early
        )
    except (AttributeError, OSError):
        pass  # no posix_spawn or no process: the writer sees a broken pipe, as before


class TerminationRequested(BaseException):
    """SIGTERM/SIGINT arrived: stop taking input, settle what is in flight, exit non-zero."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopping on signal {signum}")
        self.signum = signum


class Shutdown:
    """What the signal handler and the reader share."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.waiting_for_input = False

    def request(self, signum: int) -> None:
        """Called from the signal handler."""
        first = self.signum is None
        if first:
            self.signum = signum
        if first and self.waiting_for_input:
            raise TerminationRequested(signum)


class StopRequests:
    """Turns a stop signal into `stopping` being set, without a lock in the signal handler.

    The handler runs on the main thread between any two bytecodes, possibly inside code that
    holds a lock, even inside its own earlier run (a second Ctrl-C): it must take no lock, or it
    waits forever. `stopping.set()` takes the Event's lock, which the main thread holds while it
    sets that Event itself (the target's close(), delivery's abandon()); so the handler only
    writes a byte to a pipe, and a helper thread sets `stopping`: retries and throttle waits end
    as soon as it is read.
    """

    def __init__(self, stopping: threading.Event) -> None:
        read_end, self._write_end = os.pipe()
        threading.Thread(
            target=self._set_on_wake, args=(read_end, stopping), daemon=True, name="posthog-signal"
        ).start()

    @staticmethod
    def _set_on_wake(read_end: int, stopping: threading.Event) -> None:
        os.read(read_end, 1)
        stopping.set()

    def handle(self, signum: int, shutdown: Shutdown) -> None:
        """Called from the signal handler: wake the helper, tell the reader (which stops at
        the next line, or at once while it waits for input)."""
        os.write(self._write_end, b"\0")
        shutdown.request(signum)


class FastSingerReader(GenericSingerReader[bytes]):
    """Reads stdin as bytes and parses with orjson: several times faster than json."""

    def __init__(self) -> None:
        super().__init__()
        self.shutdown = Shutdown()
        self.at_end_of_input = False
        # Where lines msgspec refuses go (the target sets it); None: every such line stops.
        self.input_lines: InputLines | None = None

    @property
    def default_input(self) -> IO[bytes]:
        # Large reads: each read call hands the GIL to the delivery threads and the reader
        # may wait to get it back; the default 8 KiB is only about four records.
        enlarge_pipe(sys.stdin.fileno())
        return open(sys.stdin.fileno(), "rb", buffering=_READ_BUFFER_BYTES, closefd=False)

    def deserialize_json(self, line: bytes | str) -> dict:
        """One message; the error names the problem, never the line's content (user data)."""
        try:
            message = exact_numbers.loads(line if isinstance(line, bytes) else line.encode())
        except ValueError as exc:  # orjson.JSONDecodeError and json.JSONDecodeError are both
            ending = b"\n" if isinstance(line, bytes) else "\n"
            cut = (
                ""
                if line.endswith(ending)  # type: ignore[arg-type]
                else ", cut off: no newline at its end, as when the tap dies writing it"
            )
            raise InvalidInputLine(f"not JSON ({len(line)} bytes{cut}): {exc}") from exc
        if not isinstance(message, dict):
            raise InvalidInputLine(
                f"a Singer message must be a JSON object, not {type(message).__name__}"
            )
        return message

    def _message(self, line: bytes | str, number: int) -> dict | None:
        """The message of input line ``number``; None when it was set aside instead. A line
        msgspec refuses is mended, or set aside, when it is a RECORD (input_lines.py)."""
        raw = line.encode() if isinstance(line, str) else line
        inputs = self.input_lines
        depth = nesting_depth(raw)
        if depth > MAX_DEPTH and inputs is not None and is_record_line(raw):
            inputs.keep(
                number,
                raw,
                f"nested {depth} levels deep; a PostHog payload is written at most "
                f"{MAX_DEPTH} levels deep",
            )
            return None
        try:
            message = self.deserialize_json(raw)
        except InvalidInputLine as exc:
            stop = InvalidInputLine(f"input line {number} is {exc}")
            if inputs is None or not raw.endswith(b"\n") or not is_record_line(raw):
                raise stop from None  # a SCHEMA or STATE, or a line cut off as the tap died
            try:
                message = mend(raw)
            except SetAsideError as aside:
                inputs.keep(number, raw, aside.reason)
                return None
            except ValueError:
                inputs.keep(number, raw, str(exc))
                return None
            inputs.repaired_record(number, message)
        if inputs is not None and message.get("type") == "RECORD":
            unusable = unusable_record(message)
            if unusable is not None:
                inputs.keep(number, raw, unusable)
                return None
        return message

    def process_lines(
        self, file_input: IO[Any] | None, callbacks: dict[str, Callable[[dict], None]]
    ) -> Counter[str]:
        counts: Counter[str] = Counter()
        lines = iter(file_input or self.default_input)
        shutdown = self.shutdown
        number = 0
        while True:
            shutdown.waiting_for_input = True
            try:
                if shutdown.signum is not None:
                    raise TerminationRequested(shutdown.signum)
                line = next(lines, None)
            finally:
                shutdown.waiting_for_input = False
            if line is None:
                self.at_end_of_input = True
                return counts
            number += 1
            if line.isspace():  # no copy of the line, unlike strip()
                continue
            message = self._message(line, number)
            if message is None:
                continue  # set aside (input_lines.py)
            kind = message.get("type")
            callback = callbacks.get(kind)  # type: ignore[arg-type]
            if callback is None:
                self.assert_line_requires(message, requires={"type"})
                self._process_unknown_message(message)
            else:
                callback(message)
            counts[kind] += 1  # type: ignore[index]
