"""The `unreadable_lines` stream: export lines that are not one JSON object, kept byte for byte.

A line that is ``null``, ``[]``, half a line or garbage can never be read, however often the
export is read again, so it must not stop a migration. Each one becomes a record of this second
stream (any Singer target keeps it: a SQL target gets a table, target-posthog a set-aside file
next to its dead letters), and the `events` bookmark moves past it like past any other line.

Record shape (key: ``member`` + ``line_number``)::

    source       the file read (local mode) or "Export API window <window>" (API mode); a
                 byte of its name that is not UTF-8 as \\xNN
    member       the JSON-lines file: the zip member's name, or the .json.gz file's name
    line_number  1-based line number within the member (after gunzip)
    reason       why it could not be read (never the line's content)
    line_base64  the line's exact bytes, base64 (without its newline)
    line_text    the same bytes as text when they are valid UTF-8 without a NUL byte (which
                 PostgreSQL's text cannot hold), else null
    hour         the member's upload hour (RFC 3339 UTC, from its name; null if it does not say)
    byte_length  the line's length in bytes
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from singer_sdk import Stream
from singer_sdk import typing as th

if TYPE_CHECKING:
    from singer_sdk.helpers.types import Context

STREAM_NAME = "unreadable_lines"


@dataclass(frozen=True, slots=True)
class UnreadableLine:
    """One line set aside, as read: where it is, why, and its bytes."""

    source: str
    member: str
    line_number: int
    reason: str
    line: bytes
    hour: dt.datetime | None

    def record(self) -> dict[str, Any]:
        try:
            text: str | None = self.line.decode()
        except UnicodeDecodeError:
            text = None
        if text is not None and "\x00" in text:
            text = None  # PostgreSQL's text holds no NUL (texts.py): line_base64 has the bytes
        return {
            "source": _name_text(self.source),
            "member": _name_text(self.member),
            "line_number": self.line_number,
            "reason": self.reason,
            "line_base64": base64.b64encode(self.line).decode("ascii"),
            "line_text": text,
            "hour": self.hour.isoformat() if self.hour else None,
            "byte_length": len(self.line),
        }


def _name_text(name: str) -> str:
    """A file name as valid text: bytes of a name on disk that are not UTF-8 (Python holds them
    as lone surrogates, which no JSON writer takes) as ``\\xNN``, like Python shows them."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return name.encode(errors="surrogateescape").decode(errors="backslashreplace")
    return name


class UnreadableLinesStream(Stream):
    """Lines of the export that are not one JSON object (written while `events` reads)."""

    name = STREAM_NAME
    primary_keys = ("member", "line_number")
    replication_key = None
    schema = th.PropertiesList(
        th.Property("source", th.StringType(nullable=False), required=True),
        th.Property("member", th.StringType(nullable=False), required=True),
        th.Property("line_number", th.IntegerType(nullable=False), required=True),
        th.Property("reason", th.StringType(nullable=False), required=True),
        th.Property("line_base64", th.StringType(nullable=False), required=True),
        th.Property("line_text", th.StringType(nullable=True)),
        th.Property("hour", th.DateTimeType(nullable=True)),
        th.Property("byte_length", th.IntegerType(nullable=False), required=True),
    ).to_dict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._schema_written = False
        self.count = 0

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """Nothing of its own: its records are written by `events` as it meets them."""
        return ()

    def _sync_records(
        self, context: Context | None = None, *, write_messages: bool = True
    ) -> Generator[dict, Any, Any]:
        """Nothing when the tap reaches this stream: its lines went out (each after the SCHEMA,
        written before the first) while `events` read them, and its progress is the `events`
        bookmark. (The SDK's would only write the last STATE again.)"""
        yield from ()

    def finalize_state_progress_markers(self, state: dict | None = None) -> None:
        """No progress markers of its own, so no STATE to write (see `_sync_records`)."""

    def write_schema_once(self) -> None:
        """This stream's SCHEMA, when selected, unless written already. `events` calls it before
        its first record: written at this stream's own sync (the SDK's way), it would be the
        run's last line, where users and tools look for the last STATE."""
        if self.selected and not self._schema_written:
            self._schema_written = True
            super()._write_schema_message()

    def _write_schema_message(self) -> None:
        """The SDK's call at this stream's sync: only if `events` has not written it."""
        self.write_schema_once()

    def emit(self, line: UnreadableLine) -> None:
        """One set-aside line, after this stream's SCHEMA (written once, before the first)."""
        self.count += 1
        if not self.selected:
            return  # deselected in the catalog: counted and logged only
        self.write_schema_once()
        self._write_record_message(line.record())
