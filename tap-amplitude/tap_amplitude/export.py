"""Reading Amplitude export files: zip archives and their gzipped JSON-lines members.

Nothing here holds more than one decompressed buffer in memory: a zip is read from disk member by
member (its directory is at the end, so it must be on disk), and each gzip member is decompressed
and parsed line by line. Any damage is raised as :class:`CorruptExportError` naming the file, the
member and the line, so a caller never bookmarks past data it could not read.
"""

from __future__ import annotations

import datetime as dt
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import orjson
from isal import isal_zlib

# `<project>_<YYYY-MM-DD>_<H>#<n>.json.gz`, possibly under a `<project>/` folder in a zip.
MEMBER_NAME = re.compile(r"_(\d{4}-\d{2}-\d{2})_(\d{1,2})#(\d+)\.json(?:\.gz)?$")

# Amplitude writes times as `YYYY-MM-DD HH:MM:SS.ffffff`, UTC without a zone.
TIME_FIELDS = (
    "event_time",
    "client_event_time",
    "client_upload_time",
    "server_received_time",
    "server_upload_time",
    "processed_time",
    "user_creation_time",
)

GZIP_WBITS = 16 + zlib.MAX_WBITS  # read the gzip wrapper and check its CRC
READ_BYTES = 256 * 1024
# isal's stubs do not declare its error as an exception class; it is one (IsalError).
_INFLATE_ERROR: type[Exception] = isal_zlib.error  # type: ignore[assignment]
_READ_ERRORS = (OSError, EOFError, zlib.error, _INFLATE_ERROR, zipfile.BadZipFile)


class Conform(Protocol):
    """Fits a parsed record to the stream's schema, given the line it came from (conform.py)."""

    def __call__(self, record: dict[str, Any], line: bytes) -> dict[str, Any]: ...


class CorruptExportError(Exception):
    """An export file that cannot be read in full; the message names where it broke."""


@dataclass(frozen=True)
class MemberRef:
    """One JSON-lines file: a member of a zip, or a `.json.gz` file on its own."""

    path: Path
    member: str | None = None

    @property
    def name(self) -> str:
        return self.member or self.path.name

    def __str__(self) -> str:
        return f"{self.path.name}:{self.member}" if self.member else str(self.path)


def member_hour(name: str) -> dt.datetime | None:
    """The hour a member holds, from its file name (None when the name does not say)."""
    place = member_place(name)
    return None if place is None else place[0]


def member_place(name: str) -> tuple[dt.datetime, int] | None:
    """(hour, part number) from a member's file name; None when the name does not say, or says
    something impossible (a 13th month, hour 24)."""
    match = MEMBER_NAME.search(name)
    if match is None:
        return None
    day, hour, part = match.groups()
    try:
        start = dt.datetime.fromisoformat(day).replace(hour=int(hour), tzinfo=dt.UTC)
    except ValueError:
        return None
    return start, int(part)


def zip_members(path: Path) -> list[MemberRef]:
    """The JSON-lines members of a zip, in archive order (reads only its directory)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [info.filename for info in archive.infolist() if not info.is_dir()]
    except _READ_ERRORS as error:
        msg = f"{path.name} is not a readable zip archive: {error}"
        raise CorruptExportError(msg) from error
    return [MemberRef(path, name) for name in names if name.endswith((".json.gz", ".json"))]


def normalise_time(value: Any) -> Any:
    """``YYYY-MM-DD HH:MM:SS[.ffffff]`` -> RFC 3339 UTC ``YYYY-MM-DDTHH:MM:SS.ffffff+00:00``.

    String surgery rather than datetime parsing: this runs for every time of every event. A value
    in any other shape is passed through unchanged, for the target to judge.
    """
    if type(value) is str and len(value) >= 19 and value[10] == " " and value[13] == ":":
        if len(value) == 26 and value[19] == ".":
            return f"{value[:10]}T{value[11:]}+00:00"
        if len(value) == 19:
            return f"{value[:10]}T{value[11:]}.000000+00:00"
    return value


def normalise_record(record: dict[str, Any]) -> dict[str, Any]:
    """Rewrite the time fields in place; every other field, known or not, is kept as is."""
    for field in TIME_FIELDS:
        value = record.get(field)
        # The common shape is handled inline (a function call per field is measurable here).
        if type(value) is str and len(value) == 26 and value[10] == " " and value[19] == ".":
            record[field] = f"{value[:10]}T{value[11:]}+00:00"
        elif value is not None:
            record[field] = normalise_time(value)
    return record


def gunzip_lines(raw: IO[bytes]) -> Iterator[bytes]:
    """Lines of a gzip stream (several concatenated gzip members allowed), chunk by chunk.

    ISA-L's inflate (zlib-compatible, about 2.5x faster than zlib's) checks each member's CRC and
    length; a stream that ends early raises EOFError.
    """
    inflater = isal_zlib.decompressobj(wbits=GZIP_WBITS)
    tail = b""
    while chunk := raw.read(READ_BYTES):
        data = inflater.decompress(chunk)
        while inflater.eof and inflater.unused_data:
            rest = inflater.unused_data
            inflater = isal_zlib.decompressobj(wbits=GZIP_WBITS)
            data += inflater.decompress(rest)
        if data:
            lines = (tail + data).split(b"\n")
            tail = lines.pop()
            yield from lines
    if not inflater.eof:
        msg = "gzip stream ends before its end-of-stream marker (truncated)"
        raise EOFError(msg)
    if tail:
        yield tail


def _records_from(
    stream: IO[bytes], where: str, conform: Conform | None = None
) -> Iterator[dict[str, Any]]:
    """Parse gzipped JSON lines from ``stream``; errors name ``where`` and the line number."""
    line_number = 0
    try:
        for line_number, line in enumerate(gunzip_lines(stream), start=1):
            if not line or line.isspace():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError as error:
                msg = f"{where}, line {line_number}: invalid JSON ({error})"
                raise CorruptExportError(msg) from error
            if type(record) is not dict:
                msg = f"{where}, line {line_number}: not a JSON object"
                raise CorruptExportError(msg)
            yield (
                normalise_record(record)
                if conform is None
                else conform(normalise_record(record), line)
            )
    except _READ_ERRORS as error:
        msg = f"{where}: corrupt after line {line_number} ({type(error).__name__}: {error})"
        raise CorruptExportError(msg) from error


def read_member(
    ref: MemberRef, context: str = "", conform: Conform | None = None
) -> Iterator[dict[str, Any]]:
    """All records of one member, normalised (and fitted by ``conform``, if given);
    ``context`` (e.g. the window) prefixes errors."""
    where = f"{context}, member {ref}" if context else f"member {ref}"
    try:
        if ref.member is None:
            with ref.path.open("rb") as raw:
                yield from _records_from(raw, where, conform)
            return
        with zipfile.ZipFile(ref.path) as archive, archive.open(ref.member) as raw:
            yield from _records_from(raw, where, conform)
    except _READ_ERRORS as error:
        msg = f"{where}: cannot be opened ({type(error).__name__}: {error})"
        raise CorruptExportError(msg) from error


def read_archive(path: Path, context: str = "") -> Iterator[dict[str, Any]]:
    """All records of a downloaded export zip, member after member."""
    for ref in zip_members(path):
        yield from read_member(ref, context)
