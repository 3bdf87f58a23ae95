"""What reading an export counted besides its records: repairs, set-aside and blank lines,
derived uuids, records without a readable event_time (said once per member, summed per run);
and per run the members read (empty ones, ones whose name gives no hour) and the files skipped."""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass
from dataclasses import field as dataclass_field

from tap_amplitude.lines import REPAIRS_FIELD
from tap_amplitude.setaside import UnreadableLine

logger = logging.getLogger("tap-amplitude")

LINES = ""  # the key of MemberNotes.repaired that counts lines, not repairs


@dataclass
class LineStats:
    """What reading did besides yielding clean records (for logs and the run's summary)."""

    # repair -> lines; LINES -> lines with any repair
    repaired: Counter[str] = dataclass_field(default_factory=Counter)
    set_aside: Counter[str] = dataclass_field(default_factory=Counter)  # reason kind -> lines
    blank: int = 0  # lines of JSON whitespace only (no record in them), counted, not kept
    derived_uuids: int = 0
    timeless: int = 0  # records whose event_time is missing or not a time
    members: int = 0  # JSON-lines members (files, zip members) read through
    empty_members: int = 0  # ... of which held no line at all
    hourless_members: int = 0  # ... of which had a name that gives no hour
    skipped: Counter[str] = dataclass_field(default_factory=Counter)  # files: reason -> count
    # The line the last record was read from (source, member, its hour; number, bytes), set
    # aside by `unwritable` should the record prove impossible to write.
    member: tuple[str, str, str, dt.datetime | None] = ("", "", "", None)
    last_line: tuple[int, bytes] = (0, b"")
    unwritable: int = 0  # records set aside because no Singer message could be written

    def set_aside_last(self, reason: str) -> UnreadableLine:
        """The line of the last record read, to be set aside (counted and logged here): the
        writer could not write its record (``reason``: why, one line, never the content)."""
        source, member, where, hour = self.member
        line_number, line = self.last_line
        self.unwritable += 1
        self.set_aside[reason_kind(reason)] += 1
        logger.warning("%s, line %d: set aside as unreadable (%s)", where, line_number, reason)
        return UnreadableLine(source, member, line_number, reason, line, hour)

    def summary(self, stream: str) -> str:
        """``"2 lines set aside as unreadable (1 not JSON, 1 not an object; stream <stream>),
        3 blank lines skipped, 1 uuids derived, 0 without a readable event_time, 1 lines
        repaired (1 byte-order mark removed); 4 members read (1 empty, 1 named without an
        hour), 2 files skipped (1 a folder entry, 1 macOS metadata (__MACOSX))"``."""
        set_aside = ", ".join(f"{n} {kind}" for kind, n in self.set_aside.most_common())
        kinds = ", ".join(f"{n} {what}" for what, n in sorted(self.repaired.items()) if what)
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
        return (
            f"{self.set_aside.total()} lines set aside as unreadable"
            f" ({f'{set_aside}; ' if set_aside else ''}stream {stream}), "
            f"{self.blank} blank lines skipped, "
            f"{self.derived_uuids} uuids derived, {self.timeless} without a readable event_time, "
            f"{self.repaired[LINES]} lines repaired{f' ({kinds})' if kinds else ''}; "
            f"{self.members} members read ({self.empty_members} empty, "
            f"{self.hourless_members} named without an hour), "
            f"{self.skipped.total()} files skipped{f' ({skipped})' if skipped else ''}"
        )


@dataclass
class MemberNotes:
    """What one member's reading counted, said in one line each once the member is read."""

    blank: int = 0
    first_blank: int = 0
    repaired: Counter[str] = dataclass_field(default_factory=Counter)
    first_repaired: int = 0
    derived: int = 0
    first_derived: int = 0
    timeless: int = 0  # records whose event_time is missing or not a time
    first_timeless: int = 0
    outside: int = 0  # records of a member whose name gives no hour, outside the hour read
    set_aside_elsewhere: int = 0  # ... lines without an hour, set aside with its first hour

    def log(self, where: str) -> None:
        if self.repaired:
            logger.warning(
                "%s: %d lines repaired, the first on line %d (%s; each record names its "
                "repairs in its %s field)",
                where,
                self.repaired[LINES],
                self.first_repaired,
                ", ".join(f"{n} {what}" for what, n in sorted(self.repaired.items()) if what),
                REPAIRS_FIELD,
            )
        if self.derived:
            logger.warning(
                "%s: %d records without a usable uuid got a derived one (uuid_derived), the "
                "first on line %d",
                where,
                self.derived,
                self.first_derived,
            )
        if self.timeless:
            logger.warning(
                "%s: %d records without a readable event_time, the first on line %d "
                "(target-posthog takes client_event_time, else server_received_time, and says "
                "which in $amplitude_timestamp_from; with neither, it dead-letters the record)",
                where,
                self.timeless,
                self.first_timeless,
            )
        if self.outside:
            logger.info(
                "%s: %d records whose server_upload_time is outside this hour not read here (each "
                "is read with its own hour, by the run that covers it)",
                where,
                self.outside,
            )
        if self.set_aside_elsewhere:
            logger.info(
                "%s: %d lines without an upload hour not set aside again (they are set aside "
                "once, when the file's first hour is read)",
                where,
                self.set_aside_elsewhere,
            )
        if self.blank:
            logger.info(
                "%s: %d blank lines skipped (only spaces, tabs or CR; no data), the first line %d",
                where,
                self.blank,
                self.first_blank,
            )


def reason_kind(reason: str) -> str:
    """A reason without its particulars (the part before ':'), for counts by reason."""
    return reason.split(":", 1)[0]
