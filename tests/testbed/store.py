"""An Amplitude export on disk: hourly gzip JSON-lines members, and the zips the API serves.

Members are named as Amplitude's Export API, S3 and GCS exports name them:
`<project>_<YYYY-MM-DD>_<H>#<n>.json.gz` (H is 0-23 without padding, n the part number). The
hour of a member is the hour of its records' `server_upload_time`, which is what the Export API
selects by.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import orjson
from isal import igzip

from tests.testbed.events import ExportSpec, as_utc_hour, generate_events

_MEMBER_NAME = re.compile(r"^(\d+)_(\d{4}-\d{2}-\d{2})_(\d{1,2})#(\d+)\.json\.gz$")
_UUID_KEY = b'"uuid":"'
_WRITE_CHUNK_LINES = 2_000
# Zip overhead per member (local header 30 + central directory entry 46, each plus the name)
# and for the archive (end of central directory, 22), for archives under 4 GiB (no zip64).
_ZIP_LOCAL_HEADER = 30
_ZIP_CENTRAL_ENTRY = 46
_ZIP_END_RECORD = 22


@dataclass(frozen=True)
class Member:
    """One hourly gzip JSON-lines file of the export."""

    hour: datetime
    part: int
    path: Path
    events: int

    @property
    def name(self) -> str:
        return self.path.name


def member_name(project_id: int, hour: datetime, part: int) -> str:
    return f"{project_id}_{hour:%Y-%m-%d}_{hour.hour}#{part}.json.gz"


class ExportStore:
    """Hourly export members under one directory, written by streaming the generator."""

    def __init__(self, directory: Path, project_id: int, max_lines_per_member: int = 50_000):
        self.directory = Path(directory)
        self.project_id = project_id
        self.max_lines_per_member = max_lines_per_member
        self._members: dict[datetime, list[Member]] = {}
        # The order members are written into an export zip (Amplitude promises none).
        self.zip_order: Callable[[list[Member]], list[Member]] = list
        # Records the project holds whose export line a test spoiled (`spoil_lines`).
        self.spoiled: list[dict[str, Any]] = []

    @classmethod
    def build(
        cls, directory: Path, spec: ExportSpec, max_lines_per_member: int = 50_000
    ) -> ExportStore:
        """Generate `spec` into `directory` (created if needed)."""
        store = cls(directory, spec.project_id, max_lines_per_member)
        store.add(spec)
        return store

    @classmethod
    def open(cls, directory: Path) -> ExportStore:
        """An existing export directory (e.g. the bundled sample), indexed from its file names."""
        directory = Path(directory)
        found: list[tuple[int, datetime, int, Path]] = []
        for path in sorted(directory.iterdir()):
            match = _MEMBER_NAME.match(path.name)
            if match:
                try:
                    day = datetime.strptime(match[2], "%Y-%m-%d").replace(tzinfo=UTC)
                except ValueError as exc:  # 2024-02-30: no member Amplitude's API would serve
                    raise ValueError(
                        f"{path.name}: its name gives no real hour ({exc}); the Export API "
                        "stand-in serves members by the hour in their names (tap-amplitude's "
                        "export_path reads such a file)"
                    ) from None
                hour = day + timedelta(hours=int(match[3]))
                found.append((int(match[1]), hour, int(match[4]), path))
        if not found:
            raise FileNotFoundError(f"no Amplitude export members in {directory}")
        store = cls(directory, found[0][0])
        for _, hour, part, path in found:
            member = Member(hour, part, path, 0)
            count = sum(1 for _ in cls._iter_lines([member]))
            store._members.setdefault(hour, []).append(Member(hour, part, path, count))
        for members in store._members.values():
            members.sort(key=lambda m: m.part)
        return store

    def add(self, spec: ExportSpec) -> None:
        """Generate more events (new hours, or new parts of existing hours) into the store."""
        if spec.project_id != self.project_id:
            raise ValueError(f"store holds project {self.project_id}, not {spec.project_id}")
        self.add_records(generate_events(spec))

    def add_records(self, records: Iterable[dict[str, Any]]) -> None:
        """Add records as new members of their upload hours; records of one hour together."""
        self.directory.mkdir(parents=True, exist_ok=True)
        hour_key: str | None = None
        lines: list[bytes] = []
        writer = _MemberWriter(self)
        for event in records:
            key = event["server_upload_time"][:13]  # "YYYY-MM-DD HH": the member's hour
            if key != hour_key or writer.count + len(lines) >= self.max_lines_per_member:
                writer.write(lines)
                lines = []
                writer.close()
                if key != hour_key:
                    hour_key = key
                    hour = datetime.strptime(key, "%Y-%m-%d %H").replace(tzinfo=UTC)
                writer.open(hour)
            lines.append(orjson.dumps(event) + b"\n")
            if len(lines) >= _WRITE_CHUNK_LINES:
                writer.write(lines)
                lines = []
        writer.write(lines)
        writer.close()

    def _register(self, member: Member) -> None:
        self._members.setdefault(member.hour, []).append(member)

    def _next_part(self, hour: datetime) -> int:
        members = self._members.get(hour)
        return members[-1].part + 1 if members else 0

    # ---- reading -------------------------------------------------------------------------

    def hours(self) -> list[datetime]:
        """The hours that have data, in order."""
        return sorted(hour for hour, members in self._members.items() if members)

    @property
    def event_count(self) -> int:
        return sum(m.events for members in self._members.values() for m in members)

    def members(self, start: datetime | None = None, end: datetime | None = None) -> list[Member]:
        """Members whose hour is within [start, end] (inclusive whole hours), in order."""
        low = as_utc_hour(start) if start else None
        high = as_utc_hour(end) if end else None
        return [
            member
            for hour in self.hours()
            if (low is None or hour >= low) and (high is None or hour <= high)
            for member in self._members[hour]
        ]

    def iter_events(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> Iterator[dict[str, Any]]:
        """The records of the hours within [start, end], read back from disk."""
        for raw in self._iter_lines(self.members(start, end)):
            yield orjson.loads(raw)

    def held_events(self) -> Iterator[dict[str, Any]]:
        """What the Amplitude project holds: every record, including those whose export line
        `spoil_lines` made unreadable (the project still counts them; its export lost them)."""
        for raw in self._iter_lines(self.members()):
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(value, dict):
                yield value
        yield from self.spoiled

    def uuids(self) -> set[str]:
        """Every record's uuid (read without parsing whole records: uuid is the last key).

        Lines a test spoiled on purpose (not JSON, or without a uuid) have none and are left out.
        """
        found: set[str] = set()
        for raw in self._iter_lines(self.members()):
            at = raw.rfind(_UUID_KEY) + len(_UUID_KEY)
            close = raw.find(b'"', at)
            # The fast way only for a whole line; a half-written last line (an export cut
            # short) is read like any other line, and has no uuid unless it parses.
            if at >= len(_UUID_KEY) and close >= 0 and raw[close:].rstrip(b"\r\n") == b'"}':
                found.add(raw[at:close].decode())
                continue
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(value, dict) and isinstance(value.get("uuid"), str):
                found.add(value["uuid"])
        return found

    @staticmethod
    def _iter_lines(members: Iterable[Member]) -> Iterator[bytes]:
        """The members' lines; of a member whose gzip stream is cut short (a file still being
        written or copied), the lines before the cut: served as they are, read as far as
        they go, as a reader of Amplitude's export would."""
        for member in members:
            with igzip.open(member.path, "rb") as lines:
                try:
                    yield from lines
                except (EOFError, OSError):
                    continue

    # ---- the Export API's view -----------------------------------------------------------

    def arcname(self, member: Member) -> str:
        return f"{self.project_id}/{member.name}"

    def export_bytes(self, start_hour: datetime, end_hour: datetime) -> int:
        """The size of `write_zip` for the same range, without writing it (exact under 4 GiB)."""
        total = _ZIP_END_RECORD
        for member in self.members(start_hour, end_hour):
            name_bytes = 2 * len(self.arcname(member).encode())
            total += _ZIP_LOCAL_HEADER + _ZIP_CENTRAL_ENTRY + name_bytes
            total += member.path.stat().st_size
        return total

    def write_zip(self, path: Path, start_hour: datetime, end_hour: datetime) -> int:
        """Write the export zip of the inclusive hour range to `path`; return its size in bytes."""
        with Path(path).open("wb") as out:
            self.write_zip_to(out, start_hour, end_hour)
        return Path(path).stat().st_size

    def write_zip_to(self, out: IO[bytes], start_hour: datetime, end_hour: datetime) -> None:
        # Stored, not deflated: the members are gzip already, as in Amplitude's archives.
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
            for member in self.zip_order(self.members(start_hour, end_hour)):
                info = zipfile.ZipInfo(self.arcname(member), date_time=_zip_time(member.hour))
                info.compress_type = zipfile.ZIP_STORED
                info.file_size = member.path.stat().st_size
                with member.path.open("rb") as src, archive.open(info, "w") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)

    # ---- damage for tests ----------------------------------------------------------------

    def corrupt_member(self, hour: datetime) -> Path:
        """Damage the (first) member of `hour` on disk so that reading it fails; return its path."""
        members = self._members.get(as_utc_hour(hour))
        if not members:
            raise KeyError(f"no member for hour {hour.isoformat()}")
        path = members[0].path
        data = bytearray(path.read_bytes())
        # Flip bytes in the deflate stream and cut the trailer: a decoder must fail (bad data,
        # CRC mismatch, or an early end of stream), never silently read fewer records.
        middle = max(10, len(data) // 2)
        for i in range(middle, min(middle + 64, len(data) - 8)):
            data[i] ^= 0xFF
        path.write_bytes(bytes(data[:-4]))
        return path

    def spoil_lines(self, hour: datetime, lines: Iterable[bytes]) -> list[dict[str, Any]]:
        """Replace records of the (first) member of `hour`, spread over it, by `lines` (each a
        line that is not one JSON object); return the records replaced (kept in `spoiled`)."""
        member = self._members[as_utc_hour(hour)][0]
        with igzip.open(member.path, "rb") as read:
            content = [line.rstrip(b"\n") for line in read]
        spoils = list(lines)
        replaced = []
        for n, line in enumerate(spoils):
            at = (2 * n + 1) * len(content) // (2 * len(spoils))
            replaced.append(orjson.loads(content[at]))
            content[at] = line
        member.path.write_bytes(igzip.compress(b"\n".join(content) + b"\n"))
        self.spoiled.extend(replaced)
        return replaced


def _zip_time(hour: datetime) -> tuple[int, int, int, int, int, int]:
    return (hour.year, hour.month, hour.day, hour.hour, 0, 0)


class _MemberWriter:
    """Writes one gzip member at a time, registering it with the store once closed."""

    def __init__(self, store: ExportStore) -> None:
        self.store = store
        self.count = 0
        self._file: IO[bytes] | None = None
        self._hour: datetime | None = None
        self._part = 0
        self._path: Path | None = None

    def open(self, hour: datetime) -> None:
        self._hour = hour
        self._part = self.store._next_part(hour)
        self._path = self.store.directory / member_name(self.store.project_id, hour, self._part)
        # Level 1 (isa-l): several times faster than zlib, and the archives are throwaway.
        self._file = igzip.open(self._path, "wb", compresslevel=1)
        self.count = 0

    def write(self, lines: list[bytes]) -> None:
        if lines:
            assert self._file is not None
            self._file.write(b"".join(lines))
            self.count += len(lines)

    def close(self) -> None:
        if self._file is None:
            return
        self._file.close()
        assert self._hour is not None and self._path is not None
        if self.count:
            self.store._register(Member(self._hour, self._part, self._path, self.count))
        else:
            self._path.unlink()
        self._file = None
