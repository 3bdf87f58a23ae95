"""A fast Singer message writer: orjson, a large output buffer, flushed at checkpoints.

The SDK's default writer encodes with the standard library and flushes stdout after every
message; at tens of thousands of records a second both show up in profiles (a flush per record is
a system call per record). Here every message line is appended to one buffer, written out when it
passes ``BUFFER_BYTES`` and whenever a non-RECORD message (SCHEMA, STATE) is written, so a STATE
never waits in a buffer behind the records it covers.

Writes are a few hundred KiB: a write larger than the pipe's free room blocks the tap until the
reader has taken nearly all of it, and the two then work in turns rather than side by side.
They go straight to the file descriptor, carrying on after a partial write (see `write_all`).

Order is what makes a STATE safe: it is written after the records it covers. A stop request
(SIGTERM/SIGINT, see `stop`) must be honoured within seconds even while a write is blocked on a
full pipe that nobody reads any more (Meltano stops reading once its target has stopped), so
signals are never held back here. A stop between writes adds the closing STATE behind everything
pending and writes it with a deadline; a stop during a write makes the output non-blocking so
that the write returns, then the drain finishes the same way. A write cut by the deadline is
never followed by a STATE, so nothing unread is ever claimed (see `stop`).
"""

from __future__ import annotations

import contextlib
import os
import select
import stat
import sys
import time
from typing import Any, NoReturn

import orjson
from singer_plugin_common import exact_json
from singer_sdk.singerlib.encoding.base import GenericSingerWriter
from singer_sdk.singerlib.encoding.simple import Message, RecordMessage

BUFFER_BYTES = 256 * 1024
_OPTIONS = orjson.OPT_APPEND_NEWLINE
# How long a stop request may spend writing out what is pending and the closing STATE.
STOP_WRITE_SECONDS = 2.0
_PIPE_CHUNK = 4096  # a pipe that polls writable takes this much without blocking (PIPE_BUF)
_pending = bytearray()
_reader_gone = False
_stop_code: int | None = None  # a stop request arrived: the exit code it asks for
_closing_line = b""  # written last when stopping, if everything before it was
_stop_deadline = 0.0  # when stopping, no write goes on past this (time.monotonic())
_cut = False  # stopping cut a write short: nothing may follow it
_draining = False  # bytes are leaving the buffer (a memoryview of it is held)


def _fallback(value: Any) -> Any:
    """orjson handles datetimes itself; anything else unusual (e.g. Decimal) goes as text."""
    return str(value)


def _dumps(message: dict[str, Any]) -> bytes:
    return exact_json.dumps(message, default=_fallback, option=_OPTIONS)


def _drain() -> None:
    """Write out and flush everything pending.

    Once the reader has gone (a broken pipe) or a stop was requested, nothing more can be
    written: the first broken pipe is raised, and later drains (the stream's closing flush)
    only drop what is pending. A stop requested during this drain is finished at its end.
    """
    global _reader_gone, _draining
    if _reader_gone or _stop_code is not None:
        _pending.clear()
        return
    _draining = True
    try:
        sys.stdout.flush()  # anything written through the text layer goes first
        fd = _output_fd()
        if fd is None:  # stdout replaced in-process (singer-sdk's tap tests capture it)
            sys.stdout.buffer.write(_pending)
            sys.stdout.buffer.flush()
        else:
            write_all(fd, _pending)
        _pending.clear()
    except BrokenPipeError:
        _reader_gone = True
        _pending.clear()
        raise
    finally:
        _draining = False
    if _stop_code is not None:
        _finish_stop()


def stop(closing_line: bytes, exit_code: int) -> None:
    """Honour a stop request (called from the tap's signal handler): exit with `exit_code`
    within about `STOP_WRITE_SECONDS`, even if the reader no longer reads.

    Between writes, `closing_line` (the tap's STATE, which covers only records before it) goes
    behind what is pending, and all of it is written if the reader takes it in time. During a
    write (typically blocked on a full pipe), the output is made non-blocking so the write
    returns, and the drain finishes the stop: the rest of what it was writing, then the closing
    line, in time or not at all (a line cut by the deadline is never followed by a STATE).
    """
    global _stop_code, _closing_line, _stop_deadline
    if _stop_code is not None:
        return
    _stop_code, _closing_line = exit_code, closing_line
    _stop_deadline = time.monotonic() + STOP_WRITE_SECONDS
    if _draining:
        _unblock_output()
        return
    _finish_stop()


def _unblock_output() -> None:
    """Make a blocked write to a pipe or socket return at once (not a file or terminal, whose
    open file description the shell shares: it would stay non-blocking after we exit)."""
    fd = _output_fd()
    with contextlib.suppress(OSError):
        mode = os.fstat(fd).st_mode if fd is not None else 0
        if fd is not None and (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
            os.set_blocking(fd, False)


def _finish_stop() -> NoReturn:
    fd = _output_fd()
    if fd is not None and not _reader_gone and not _cut:
        _pending.extend(_closing_line)
        # A broken pipe or a full disk: the reader keeps the last STATE it received.
        with contextlib.suppress(OSError):
            _write_before(fd, _pending, _stop_deadline)
    _pending.clear()
    raise SystemExit(_stop_code)


def _write_before(fd: int, data: bytes | bytearray | memoryview, deadline: float) -> bool:
    """Write `data` in pipe-sized pieces while the reader takes them; give up at `deadline`.
    True if all of it was written."""
    with memoryview(data) as view:
        written = 0
        while written < len(view):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([], [fd], [], remaining)[1]:
                return False
            with contextlib.suppress(BlockingIOError):
                written += os.write(fd, view[written : written + _PIPE_CHUNK])
    return True


def _output_fd() -> int | None:
    try:
        return sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def write_all(fd: int, data: bytes | bytearray) -> None:
    """Every byte of `data`, in order, whatever the pipe or disk does.

    A write can take only part of the bytes: to a pipe when the process is stopped and
    continued (SIGSTOP/SIGCONT, a laptop's sleep) mid-write, to a file when the disk is nearly
    full (the next write then raises the disk's error). Python 3.11's buffered stdout
    was measured losing the rest of such a write (whole records vanished and two half records
    ran together); plain os.write calls that carry on from where the last one stopped do not.
    """
    global _cut
    with memoryview(data) as view:
        written = 0
        while written < len(view):
            try:
                written += os.write(fd, view[written:])
            except BlockingIOError:
                if _stop_code is None:
                    raise
                # A stop request unblocked the output (see `stop`): the rest, if read in time.
                _cut = not _write_before(fd, view[written:], _stop_deadline)
                return


def write_line(line: bytes, *, flush: bool) -> None:
    """Queue one complete message line; ``flush`` sends it (and all before it) now."""
    _pending.extend(line)
    if flush or len(_pending) >= BUFFER_BYTES:
        _drain()


def write_record(stream: str, record: dict[str, Any]) -> None:
    """A RECORD message straight from a parsed event, without building SDK message objects."""
    _pending.extend(_dumps({"type": "RECORD", "stream": stream, "record": record}))
    if len(_pending) >= BUFFER_BYTES:
        _drain()


def flush() -> None:
    _drain()


class OrjsonWriter(GenericSingerWriter[bytes, Message]):
    """Singer writer used by the tap (``Tap.message_writer_class``)."""

    def serialize_message(self, message: Message) -> bytes:
        data = message.to_dict()
        # Every RECORD of every stream leaves without the optional time_extracted (Singer spec),
        # whichever path wrote it (write_record's fast one never has it): records read twice
        # are then written byte for byte the same. (tap-amplitude's README, "Records".)
        data.pop("time_extracted", None)
        return _dumps(data)

    def write_message(self, message: Message) -> None:
        write_line(self.format_message(message), flush=not isinstance(message, RecordMessage))
