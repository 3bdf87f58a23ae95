"""A fast Singer message writer: orjson, a large output buffer, flushed at checkpoints.

The SDK's default writer encodes with the standard library and flushes stdout after every
message; at tens of thousands of records a second both show up in profiles (a flush per record is
a system call per record). Here every message line is appended to one buffer, written out when it
passes ``BUFFER_BYTES`` and whenever a non-RECORD message (SCHEMA, STATE) is written, so a STATE
never waits in a buffer behind the records it covers.

Writes are a few hundred KiB: a write larger than the pipe's free room blocks the tap until the
reader has taken nearly all of it, and the two then work in turns rather than side by side.
They go straight to the file descriptor, carrying on after a partial write (see `write_all`).

Order is what makes a STATE safe: it is written after the records it covers. The termination
handler writes a STATE from inside whatever the main thread was doing, so the one place bytes
leave the buffer blocks SIGTERM/SIGINT while it runs: a signal can never land between taking
bytes out of the buffer and writing them.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import orjson
from singer_sdk.singerlib.encoding.base import GenericSingerWriter
from singer_sdk.singerlib.encoding.simple import Message, RecordMessage

BUFFER_BYTES = 256 * 1024
_OPTIONS = orjson.OPT_APPEND_NEWLINE
_TERMINATION_SIGNALS = {signal.SIGTERM, signal.SIGINT}
_pending = bytearray()
_reader_gone = False


def _fallback(value: Any) -> Any:
    """orjson handles datetimes itself; anything else unusual (e.g. Decimal) goes as text."""
    return str(value)


def _dumps(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message, default=_fallback, option=_OPTIONS)


def _drain() -> None:
    """Write out and flush everything pending, with termination signals held back.

    Once the reader has gone (a broken pipe), nothing more can be written: the first failure
    is raised, and later drains (the stream's closing flush) only drop what is pending.
    """
    global _reader_gone
    if _reader_gone:
        _pending.clear()
        return
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _TERMINATION_SIGNALS)
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
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


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
    with memoryview(data) as view:
        written = 0
        while written < len(view):
            written += os.write(fd, view[written:])


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
        return _dumps(message.to_dict())

    def write_message(self, message: Message) -> None:
        write_line(self.format_message(message), flush=not isinstance(message, RecordMessage))
