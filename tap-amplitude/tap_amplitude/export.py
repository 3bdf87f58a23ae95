"""Reading Amplitude export files: zip archives and their gzipped JSON-lines members.

Nothing here holds more than one decompressed buffer in memory: a zip is read from disk member by
member (its directory is at the end, so it must be on disk), and each gzip member is decompressed
and parsed line by line. Any damage is raised as :class:`CorruptExportError` naming the file, the
member and the line, so a caller never bookmarks past data it could not read. A line that is
not one JSON object is not damage of the file: it is handed on to be set aside (setaside.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import sys
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from isal import isal_zlib

from tap_amplitude.client import FatalExportError
from tap_amplitude.content import UnusableContentError, content, member_lines, split_lines
from tap_amplitude.filenames import MEMBER_SUFFIXES, log_skipped, skip_reason
from tap_amplitude.keys import ensure_uuid, has_usable_uuid
from tap_amplitude.linenotes import LINES, LineStats, MemberNotes, reason_kind
from tap_amplitude.lines import REPAIRS_FIELD, UnreadableLineError, is_blank, parse_line
from tap_amplitude.setaside import UnreadableLine
from tap_amplitude.times import normalise_record, upload_hour

logger = logging.getLogger("tap-amplitude")

API_SOURCE = "Export API window"  # how `source` begins for lines read from a download

# `<project>_<YYYY-MM-DD>_<H>#<n>.json.gz`, possibly under a `<project>/` folder in a zip.
MEMBER_NAME = re.compile(r"_(\d{4}-\d{2}-\d{2})_(\d{1,2})#(\d+)\.json(?:\.gz)?$")

_UNZIP_IT = (
    "unzip the archive with the tool that made it and put the .json.gz files in export_path instead"
)
_NO_HOUR_FIX = (
    "in a file whose name gives no hour; rename the file "
    "<project>_<YYYY-MM-DD>_<H>#<n>.json.gz, or fix the field, to read it"
)
NO_UPLOAD_HOUR = f"no upload hour: no server_upload_time {_NO_HOUR_FIX}"
# A server_upload_time that is there but gives no hour (a number, text that is no ISO time).
UNREADABLE_UPLOAD_HOUR = f"no upload hour: server_upload_time is not a time {_NO_HOUR_FIX}"
EMPTY_FILE = (
    "an empty file (0 bytes): not even a gzip header; delete it if the export's own copy is "
    "empty too"
)
# Unreadable lines are handed on once their member has proved whole (see `_records_from`);
# past this many bytes of them (a member that is mostly garbage) they go on at once, so memory
# stays bounded.
MAX_HELD_UNREADABLE_BYTES = 16 << 20
# isal's stubs do not declare its error as an exception class; it is one (IsalError).
_INFLATE_ERROR: type[Exception] = isal_zlib.error  # type: ignore[assignment]
READ_ERRORS = (OSError, EOFError, zlib.error, _INFLATE_ERROR, zipfile.BadZipFile)


class Conform(Protocol):
    """Fits a parsed record to the stream's schema, given the line it came from (conform.py)."""

    def __call__(
        self, record: dict[str, Any], line: bytes, where: str, line_number: int
    ) -> dict[str, Any]: ...


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
        return f"{self.path}:{self.member}" if self.member else str(self.path)


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


def zip_members(path: Path, skipped: Counter[str] | None = None) -> list[MemberRef]:
    """The JSON-lines members of a zip, in archive order (reads only its directory); the
    entries that are not export data are skipped, each with one info line (and counted by
    reason in ``skipped``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [info.filename for info in archive.infolist()]
    except READ_ERRORS as error:
        cause = error.strerror if isinstance(error, OSError) and error.strerror else error
        fix = (
            "let the user running the tap read it, and run again"
            if isinstance(error, PermissionError)
            else "it may be half-copied: copy it again from the export and run again"
        )
        msg = f"{path}: not a readable zip archive ({cause}); nothing in it was read; {fix}"
        raise CorruptExportError(msg) from error
    members = []
    for name in names:
        reason = skip_reason(name, MEMBER_SUFFIXES)
        if reason is None:
            members.append(MemberRef(path, name))
        else:
            log_skipped(f"{path.name}:{name}", reason, skipped)
    return members


def _records_from(
    stream: IO[bytes],
    ref: MemberRef,
    where: str,
    source: str,
    stats: LineStats,
    conform: Conform | None = None,
    within: tuple[dt.datetime, dt.datetime] | None = None,
    sets_aside: bool = True,
) -> Iterator[dict[str, Any] | UnreadableLine]:
    """Parse gzipped JSON lines from ``stream``: records, and the lines that are not one.
    With ``within`` (a member whose name gives no hour, read once per hour it holds), each
    record is judged by its own `upload_hour`: outside ``within`` it is left for the reading
    of its own hour (counted), and without one it is set aside like a line that is not a
    record, only when ``sets_aside`` (the reading of the member's first hour: once, not per
    hour or per run).

    Damage to the gzip stream raises (naming ``where`` and the last line read): the file may
    be half-copied, and reading it again can help. A line that is not one JSON object cannot
    be helped by re-reading: it is handed on as an :class:`UnreadableLine` to be set aside,
    once the member has proved whole. Blank lines are counted; every kind is logged once per
    member, each set-aside line once.
    """
    line_number = 0
    notes = MemberNotes()
    unreadable: list[UnreadableLine] = []
    held = 0
    stats.member = (source, ref.name, where, member_hour(ref.name))
    try:
        for line_number, line in enumerate(member_lines(stream, where), start=1):
            if line[:1] != b"{" and is_blank(line):  # (nearly every line starts with "{")
                notes.blank += 1
                notes.first_blank = notes.first_blank or line_number
                continue
            try:
                record = parse_line(line)
                if within is not None:
                    hour = upload_hour(record)
                    if hour is None:
                        raise UnreadableLineError(no_hour_reason(record))
                    if not within[0] <= hour < within[1]:
                        notes.outside += 1
                        continue
            except UnreadableLineError as error:
                if within is not None and not sets_aside:
                    notes.set_aside_elsewhere += 1
                    continue
                unreadable.append(
                    UnreadableLine(
                        source, ref.name, line_number, error.reason, line, member_hour(ref.name)
                    )
                )
                held += len(line)
                if held > MAX_HELD_UNREADABLE_BYTES:
                    yield from _set_aside(unreadable, where, stats)
                    held = 0
                continue
            repairs = record.get(REPAIRS_FIELD)
            if repairs is not None:
                notes.repaired.update(repairs)
                notes.repaired[LINES] += 1
                notes.first_repaired = notes.first_repaired or line_number
            if not has_usable_uuid(record) and ensure_uuid(record, line):
                notes.derived += 1
                notes.first_derived = notes.first_derived or line_number
            record = normalise_record(record)
            if conform is not None:  # an unreadable time becomes null here
                record = conform(record, line, where, line_number)
            if record.get("event_time") is None:
                notes.timeless += 1
                notes.first_timeless = notes.first_timeless or line_number
            stats.last_line = (line_number, line)  # for a record the writer refuses
            yield record
    except READ_ERRORS as error:
        raise CorruptExportError(_damage(where, line_number, error, source)) from error
    # Only now is the member known whole (its gzip checksum read): a garbled line of a damaged
    # member is damage, to be read again once the file is mended, not a line to keep.
    yield from _set_aside(unreadable, where, stats)
    stats.members += 1
    stats.hourless_members += member_hour(ref.name) is None
    if not line_number:
        stats.empty_members += 1
        logger.info("%s: empty (no lines), no events in it", where)
    stats.blank += notes.blank
    stats.repaired.update(notes.repaired)
    stats.derived_uuids += notes.derived
    stats.timeless += notes.timeless
    notes.log(where)


def no_hour_reason(record: dict[str, Any]) -> str:
    """Why a record of a member whose name gives no hour cannot be placed: the field is
    missing, or holds no time (`upload_hour` gives None)."""
    return NO_UPLOAD_HOUR if record.get("server_upload_time") is None else UNREADABLE_UPLOAD_HOUR


@dataclass(frozen=True)
class UploadHours:
    """What the lines of a member whose name gives no hour say of their hours, for one run's
    range: the hours in it (sorted), the member's first hour in or out of it (None: no line
    gives one), lines outside it, lines that give none (not one JSON object, or no readable
    ``server_upload_time``)."""

    hours: tuple[dt.datetime, ...]
    first: dt.datetime | None
    outside: int
    hourless: int


def upload_hours(ref: MemberRef, start: dt.datetime, end: dt.datetime) -> UploadHours:
    """Each line's `upload_hour`, judged against ``start .. end`` (exclusive), as
    `read_member` judges them when given ``within``. Raises what reading it raises (damage:
    see `read_member`)."""
    hours: set[dt.datetime] = set()
    first, outside, hourless = None, 0, 0
    with _open_member(ref) as raw:
        for line in split_lines(content(raw, None)):
            if is_blank(line):
                continue
            try:
                hour = upload_hour(parse_line(line))
            except UnreadableLineError:
                hour = None
            if hour is None:
                hourless += 1
                continue
            first = hour if first is None or hour < first else first
            if start <= hour < end:
                hours.add(hour)
            else:
                outside += 1
    return UploadHours(tuple(sorted(hours)), first, outside, hourless)


def _damage(where: str, line_number: int, error: BaseException, source: str) -> str:
    """The one line for a member that cannot be read in full: where, the cause, the fix."""
    if isinstance(error, UnusableContentError):
        return f"{where}: {error}; nothing of it was read; no bookmark passes its hour"
    if isinstance(error, EOFError):
        cause = str(error)
    elif isinstance(error, zipfile.BadZipFile):
        cause = f"zip archive damaged: {error}"
    elif isinstance(error, OSError):
        cause = f"cannot read it: {error.strerror or error}"
    else:
        cause = f"gzip data damaged: {error}"
    at = f"after line {line_number}" if line_number else "before its first line"
    if isinstance(error, PermissionError):
        fix = "let the user running the tap read it, and run again"
    elif source.startswith(API_SOURCE):
        fix = (
            "the download may have been damaged: run again (the window is downloaded again); "
            "if it keeps failing, export that hour with Amplitude's S3/GCS export and read it "
            "with export_path"
        )
    else:
        fix = "the file may be half-copied: copy it again from the export and run again"
    return f"{where}: unreadable {at} ({cause}); no bookmark passes its hour; {fix}"


def _set_aside(
    unreadable: list[UnreadableLine], where: str, stats: LineStats
) -> Iterator[UnreadableLine]:
    """Hand on (and log, one line each) the unreadable lines held so far; empties the list."""
    for line in unreadable:
        stats.set_aside[reason_kind(line.reason)] += 1
        logger.warning(
            "%s, line %d: set aside as unreadable (%s)", where, line.line_number, line.reason
        )
        yield line
    unreadable.clear()


def read_member(
    ref: MemberRef,
    context: str = "",
    stats: LineStats | None = None,
    source: str | None = None,
    conform: Conform | None = None,
    within: tuple[dt.datetime, dt.datetime] | None = None,
    sets_aside: bool = True,
) -> Iterator[dict[str, Any] | UnreadableLine]:
    """All records of one member, normalised, and its unreadable lines (see `_records_from`;
    ``within``, the hour being read, and ``sets_aside`` apply to a member whose name gives no
    hour).

    ``context`` (e.g. the window) prefixes messages; ``source`` names the origin of set-aside
    lines (default: the file's path). Messages name the member by name alone when ``source``
    says it came from the Export API (its file is a temporary download), else by path.
    """
    source = source or str(ref.path)
    member = ref.name if source.startswith(API_SOURCE) else str(ref)
    where = f"{context}, member {member}" if context else f"member {member}"
    stats = stats if stats is not None else LineStats()
    try:
        # gzip and zip check their CRC only at a member's end, and a damaged deflate stream
        # can inflate to plausible but wrong lines before that: changed values, or invented
        # events (a garbled uuid derives a new one) that PostHog could never delete. So the
        # member is proved whole first, then read.
        if ref.member is None and ref.path.stat().st_size == 0:
            # Even an empty gzip stream has a header: a file of no bytes was cut to nothing.
            raise EOFError(EMPTY_FILE)
        with _open_member(ref) as raw:
            for _ in content(raw, None):  # to the end: every CRC is checked (raises on damage)
                pass
        with _open_member(ref) as raw:
            if member_hour(ref.name) is not None:
                within = None
            yield from _records_from(raw, ref, where, source, stats, conform, within, sets_aside)
    except READ_ERRORS as error:
        raise CorruptExportError(_damage(where, 0, error, source)) from error


@contextlib.contextmanager
def _open_member(ref: MemberRef) -> Iterator[IO[bytes]]:
    """The member's raw bytes: the file itself, or its entry in the zip archive. Raises
    UnusableContentError for an entry zipfile cannot open (password-protected, or compressed
    with a method it does not know, such as AES or Deflate64): reading again cannot help."""
    if ref.member is None:
        with ref.path.open("rb") as raw:
            yield raw
        return
    with zipfile.ZipFile(ref.path) as archive:
        try:
            opened = archive.open(ref.member)
        except NotImplementedError as error:  # (a RuntimeError too: first)
            msg = f"a zip entry this tap cannot unpack ({error})"
            raise UnusableContentError(f"{msg}; {_UNZIP_IT}") from error
        except RuntimeError as error:  # zipfile's word for an encrypted entry
            msg = "a password-protected zip entry"
            raise UnusableContentError(f"{msg}; {_UNZIP_IT}") from error
        with opened as raw:
            yield raw


def without_sdk_error_line(record: logging.LogRecord) -> bool:
    """A logging filter for the stream's logger: singer-sdk logs "An unhandled error occurred
    while syncing ..." for any error; for a damaged export the tap's own one line says it all
    (file, member, line, cause, fix), so the SDK's is dropped for those only."""
    if not record.msg.startswith("An unhandled error occurred while syncing"):
        return True
    error = sys.exc_info()[1]
    return not isinstance(error, (CorruptExportError, FatalExportError))


def read_archive(path: Path, context: str = "") -> Iterator[dict[str, Any] | UnreadableLine]:
    """All records of a downloaded export zip, member after member."""
    for ref in zip_members(path):
        yield from read_member(ref, context)
