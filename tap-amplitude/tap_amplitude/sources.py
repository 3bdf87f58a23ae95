"""Where windows of export data come from: the Export API (prefetched) or files on disk.

Both sources hand out :class:`ReadyWindow` items in hour order, each naming the JSON-lines members
to read; the stream reads them (by hour: checkpoints.py), emits the records, bookmarking each
completed hour, then the window's end. A window is
handed out only after every window before it, so bookmarks never jump over unread data.
"""

from __future__ import annotations

import datetime as dt
import glob
import logging
import queue
import threading
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tap_amplitude.client import (
    Download,
    ExportClient,
    FatalExportError,
    RetriesExhaustedError,
    UnreadableBodyError,
    WindowRejectedError,
)
from tap_amplitude.content import GZIP_MAGIC
from tap_amplitude.export import (
    READ_ERRORS,
    MemberRef,
    member_hour,
    upload_hours,
    zip_members,
)
from tap_amplitude.filenames import log_skipped, skip_reason
from tap_amplitude.windows import HOUR, Window, WindowPlanner, WindowTooLargeError, bookmark_text

logger = logging.getLogger("tap-amplitude")

S3_HINT = (
    "The Export API cannot serve this hour. Export it with Amplitude's Amazon S3 or Google "
    "Cloud Storage export, then read those files with the export_path setting (same records, "
    "same bookmarks) and run again with the API for the hours after it."
)


@dataclass
class ReadyWindow:
    """A window whose data is on disk and ready to read (``members`` empty: no data)."""

    window: Window
    members: list[MemberRef] = field(default_factory=list)
    size: int = 0
    seconds: float = 0.0
    path: Path | None = None  # the downloaded zip, deleted once read
    # Members whose name gives no hour that set aside their lines without one in this window
    # (the member's first hour: once, not in every hour or run that reads it).
    sets_aside: frozenset[MemberRef] = frozenset()


@dataclass
class _Finished:
    """End of the producer's work: None when it walked the whole range, else why it stopped."""

    error: BaseException | None = None


class ApiSource:
    """Walks the planner's windows, downloading the next one while the current one is read.

    A background thread runs the planner and the client (it alone touches them and the stats);
    the reading thread takes finished downloads from a queue in order. A semaphore bounds the
    archives on disk to two: the one being read and the one prefetched.
    """

    def __init__(
        self, client: ExportClient, planner: WindowPlanner, skipped: Counter[str] | None = None
    ) -> None:
        self.client = client
        self.planner = planner
        self.skipped = skipped  # archive entries that are not export data, by reason
        self._queue: queue.Queue[ReadyWindow | _Finished] = queue.Queue()
        self._disk_slots = threading.Semaphore(2)
        self._stop = threading.Event()

    def windows(self) -> Iterator[ReadyWindow]:
        """Ready windows in order; raises what stopped the producer after the last good one."""
        producer = threading.Thread(target=self._produce, name="export-download", daemon=True)
        producer.start()
        try:
            while True:
                item = self._queue.get()
                if isinstance(item, _Finished):
                    if item.error is not None:
                        raise item.error
                    return
                try:
                    yield item
                finally:
                    if item.path is not None:
                        item.path.unlink(missing_ok=True)
                        self._disk_slots.release()
        finally:
            # Do not wait out a download in flight (SIGTERM must stop promptly): the thread is a
            # daemon, sees the stop flag after its download, and its file dies with the workdir.
            self._stop.set()
            producer.join(timeout=1)

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                window = self.planner.next_window()
                if window is None:
                    break
                if not self._take_disk_slot():
                    return
                download = self._download(window)
                if download is None:  # split: the planner now offers a narrower window
                    self._disk_slots.release()
                    continue
                self.planner.completed(window, download.size)
                if download.path is None:
                    self._disk_slots.release()
                    self._queue.put(ReadyWindow(window, seconds=download.seconds))
                else:
                    members = zip_members(download.path, self.skipped)
                    self._queue.put(
                        ReadyWindow(window, members, download.size, download.seconds, download.path)
                    )
            self._queue.put(_Finished())
        except BaseException as error:  # handed to the reading thread, which raises it
            self._queue.put(_Finished(error))

    def _take_disk_slot(self) -> bool:
        while not self._stop.is_set():
            if self._disk_slots.acquire(timeout=0.2):
                return True
        return False

    def _download(self, window: Window) -> Download | None:
        """The window's download, or None after splitting it (Amplitude asked for less)."""
        try:
            return self.client.download(window)
        except (WindowRejectedError, UnreadableBodyError) as rejection:
            # An answer that stays unreadable may come from one hour's data (Amplitude fails
            # to assemble it): narrowing the window finds that hour, and the rest still loads.
            try:
                half = self.planner.split(window)
            except WindowTooLargeError:
                msg = f"Hour {window} is refused by the Export API ({rejection}). {S3_HINT}"
                raise FatalExportError(msg) from rejection
            self.client.stats.splits += 1
            logger.info("Window %s refused (%s); splitting, next %s", window, rejection, half)
            return None
        except RetriesExhaustedError as error:
            if window.hours == 1:
                msg = f"Hour {window} keeps failing: {error}. {S3_HINT}"
                raise FatalExportError(msg) from error
            raise


class LocalSource:
    """Export files on disk (``export_path``): one ready window per hour that has data.

    Zips are indexed by their directory only; members are grouped by the hour in their name, and
    members of hours outside the range are left alone. The same member name found twice (a zip
    and its unpacked files side by side) is read once: Amplitude names each part uniquely.

    A member whose name gives no hour (renamed by someone) is read with each hour of a
    ``server_upload_time`` in it within the run's range, emitting that hour's records only
    (export.read_member's ``within``): each record is emitted with its own hour, so the
    bookmark passes it only once emitted, and a later run never emits it again; those outside
    the range are left for the run that covers them. A line that gives no hour is set aside
    (byte for byte, counted) once, with the member's first hour (by the run that covers it);
    a member without any hour sets them aside with this run's first hour.
    """

    def __init__(
        self, export_path: str, window: Window, skipped: Counter[str] | None = None
    ) -> None:
        self.export_path = export_path
        self.range = window
        self.skipped = skipped  # files and entries not read, by reason (for the run's summary)

    @staticmethod
    def find_files(
        export_path: str, skipped: Counter[str] | None = None, *, log_skips: bool = False
    ) -> list[Path]:
        """The export files a folder or glob names: zips and ``.json.gz`` members.

        Other files (hidden, macOS metadata, S3 markers, ...; see filenames.py) are left out,
        each with one info line when ``log_skips``, counted by reason in ``skipped``.
        """
        root = Path(export_path).expanduser()
        if root.is_dir():
            candidates = [(p, p.relative_to(root).as_posix()) for p in root.rglob("*")]
        else:
            found = glob.glob(str(root), recursive=True)  # noqa: PTH207
            candidates = [(Path(p), Path(p).name) for p in found]
        files = []
        for path, name in candidates:
            if not path.is_file():
                # A folder, a broken link or a pipe: said only when named like export data.
                if log_skips and skip_reason(name) is None:
                    log_skipped(str(path), _not_a_file(path), skipped)
                continue
            reason = skip_reason(name)
            if reason is None:
                files.append(path)
            elif log_skips:
                log_skipped(str(path), reason, skipped)
        return sorted(files)

    def windows(self) -> Iterator[ReadyWindow]:
        by_hour: dict[dt.datetime, dict[str, MemberRef]] = {}
        sets_aside: dict[dt.datetime, set[MemberRef]] = {}
        for path in self.find_files(self.export_path, self.skipped, log_skips=True):
            for ref in self._members_of(path):
                named = member_hour(ref.name)
                if named is None:
                    hours, aside = self._hours_from_records(ref)
                    if aside is not None:
                        sets_aside.setdefault(aside, set()).add(ref)
                else:
                    hours = (named,)
                for hour in hours:
                    if self.range.start <= hour < self.range.end:
                        self._place(by_hour.setdefault(hour, {}), ref)
        for hour in sorted(by_hour):
            refs = [by_hour[hour][part] for part in sorted(by_hour[hour])]
            size = sum(_member_size(ref) for ref in refs)
            here = frozenset(sets_aside.get(hour, ()))
            yield ReadyWindow(Window(hour, hour + HOUR), refs, size, sets_aside=here)

    def _place(self, seen: dict[str, MemberRef], ref: MemberRef) -> None:
        """Add ``ref`` to its hour's members, unless the same part is there already."""
        part = ref.name.rsplit("/", 1)[-1]
        if part in seen:
            logger.warning("Skipping %s: same part already read from %s", ref, seen[part])
            if self.skipped is not None:
                self.skipped["same part read from another file"] += 1
            return
        seen[part] = ref

    def _members_of(self, path: Path) -> list[MemberRef]:
        """A zip's JSON-lines members, or the file itself: a file named `.zip` whose first
        bytes say gzip (renamed) is one member, said in one info line (read as a zip, it would
        stop the run as damaged, and copying it again could not help)."""
        if not path.name.endswith(".zip"):
            return [MemberRef(path)]
        try:
            with path.open("rb") as raw:
                gzipped = raw.read(len(GZIP_MAGIC)) == GZIP_MAGIC
        except OSError:
            gzipped = False  # zip_members says why it cannot be read
        if not gzipped:
            return zip_members(path, self.skipped)
        logger.info(
            "%s: named .zip but holds gzip data (its first bytes); read as one member", path
        )
        return [MemberRef(path)]

    def _hours_from_records(
        self, ref: MemberRef
    ) -> tuple[tuple[dt.datetime, ...], dt.datetime | None]:
        """The hours to read a member whose name gives none with (class docstring), and the
        hour whose reading sets aside its lines without one (None: not this run), said in one
        line."""
        try:
            found = upload_hours(ref, self.range.start, self.range.end)
        except READ_ERRORS:  # damaged: read it first, so the read stops the run, naming it
            return (self.range.start,), self.range.start
        first = self.range.start if found.first is None else found.first
        aside = first if self.range.start <= first < self.range.end else None
        extra = [aside] if found.hourless and aside is not None else []
        hours = tuple(sorted({*found.hours, *extra}))
        if not hours:
            logger.info(
                "%s: its name gives no hour, and every server_upload_time in it is outside "
                "this run: not read",
                ref,
            )
            return (), None
        if not found.hourless:
            without = "0 without one"
        elif aside is None:
            without = f"{found.hourless} without one set aside by the run reading its first hour"
        else:
            without = f"{found.hourless} without one set aside with hour {bookmark_text(aside)}"
        logger.info(
            "%s: its name gives no hour; read with each hour of a server_upload_time in it "
            "within this run (%s), each time emitting that hour's records only (%d outside "
            "this run left for the run that covers them, %s)",
            ref,
            ", ".join(bookmark_text(hour) for hour in hours),
            found.outside,
            without,
        )
        return hours, aside


def _not_a_file(path: Path) -> str:
    if path.is_dir():
        return "a folder, not an export file (its contents are read on their own)"
    if path.is_symlink():
        return "a link to nothing (its target is missing)"
    return "not a regular file"


def _member_size(ref: MemberRef) -> int:
    if ref.member is None:
        return ref.path.stat().st_size
    with zipfile.ZipFile(ref.path) as archive:
        return archive.getinfo(ref.member).compress_size
