"""The `events` stream: Amplitude's raw export records, bookmarked per completed hour.

Why bookmarks are written by hand here (see docs on singer-sdk's state internals):
records inside an export are not sorted by ``server_upload_time``, so the SDK's per-record
bookmarking would either raise (sorted mode) or keep progress in non-resumable markers until the
very end of the run (unsorted mode). Instead the bookmark moves only when every member of an hour
has been read and its records emitted, to that hour's exclusive end, and a STATE is written right
then (checkpoints.py says how a window's members are ordered and cut into hours); the window's
end is bookmarked too, hours without data included. A crash at any point resumes at the first hour
not finished: at most that hour is re-sent, however wide the window. The resumed run asks the
Export API (or reads files) from that hour on, which is safe because members hold whole hours
by ``server_upload_time``, the field the API selects by.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

import orjson
from singer_sdk import Stream
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.mapper import SameRecordTransform

from tap_amplitude import writer
from tap_amplitude.checkpoints import ReadingPlan, plan_window
from tap_amplitude.client import ExportClient, ExportStats
from tap_amplitude.conform import Conformer
from tap_amplitude.export import API_SOURCE, read_member, without_sdk_error_line
from tap_amplitude.linenotes import LineStats
from tap_amplitude.range_progress import RangeProgress
from tap_amplitude.rundir import RunFolder, remove_leftovers
from tap_amplitude.schema import EVENTS_SCHEMA
from tap_amplitude.setaside import STREAM_NAME as UNREADABLE_LINES
from tap_amplitude.setaside import UnreadableLine, UnreadableLinesStream
from tap_amplitude.settings_env import start_date_against_bookmark
from tap_amplitude.sources import ApiSource, LocalSource, ReadyWindow
from tap_amplitude.windows import HOUR, Window, WindowPlanner, bookmark_text, floor_hour

if TYPE_CHECKING:
    from singer_sdk.helpers.types import Context, Record

    from tap_amplitude.tap import TapAmplitude

REPLICATION_KEY = "server_upload_time"


class EventsStream(Stream):
    """Every event of the project, in export windows of whole hours."""

    name = "events"
    primary_keys = ("uuid",)
    replication_key = REPLICATION_KEY
    schema = EVENTS_SCHEMA
    is_sorted = False
    # Records already fit the schema (times rewritten in times.py, types in conform.py); the
    # SDK's per-record type conformance would only cost time.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE
    # STATE is written per completed hour and window (below), never every N records.
    STATE_MSG_FREQUENCY = sys.maxsize

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stats = ExportStats()
        self.conform = Conformer(self.schema)
        self.line_stats = LineStats()
        self._stream_alias = self.name
        self._fast_output: bool | None = None
        self._said_unplaced = False
        self.logger.addFilter(without_sdk_error_line)

    # --- bookmarks -----------------------------------------------------------------------

    def get_replication_key_signpost(self, context: Context | None = None) -> None:
        """No signpost: the run's end bound is the window planner's, not the SDK's."""
        return

    def _increment_stream_state(
        self, latest_record: Record, *, context: Context | None = None
    ) -> None:
        """Deliberately nothing per record: see the module docstring."""

    def _checkpoint(self, hour: dt.datetime) -> None:
        """Every record before ``hour`` is on stdout: move the bookmark there, write STATE.

        A bookmark already there (an hour ending with its window) is not written twice.
        """
        state = self.get_context_state(None)
        text = bookmark_text(hour)
        if state.get("replication_key_value") == text:
            return
        state["replication_key"] = REPLICATION_KEY
        state["replication_key_value"] = text
        self.state_manager.is_flushed = False
        self._write_state_message()

    def first_hour_to_read(self) -> dt.datetime:
        """The bookmark (or start_date, whichever is later), floored to its hour.

        Flooring matters for states written by other tools or versions that bookmark a record
        time: that hour is read again in full, never skipped.
        """
        starting = self.get_starting_timestamp(None)
        # The SDK parks its starting value in the state; a STATE written before the first window
        # completes (e.g. on SIGTERM) should carry only real bookmarks.
        self.get_context_state(None).pop("starting_replication_value", None)
        start_date = dt.datetime.fromisoformat(self.config["start_date"])
        if start_date.tzinfo is None:
            start_date = start_date.replace(tzinfo=dt.UTC)
        bookmark = self.get_context_state(None).get("replication_key_value")
        if bookmark and floor_hour(dt.datetime.fromisoformat(bookmark)) != floor_hour(start_date):
            skips = start_date > dt.datetime.fromisoformat(bookmark)
            self.logger.log(
                logging.WARNING if skips else logging.INFO,
                start_date_against_bookmark(start_date, bookmark, os.environ),
            )
        if starting is None or floor_hour(starting) < floor_hour(start_date):
            return floor_hour(start_date)
        return floor_hour(starting)

    # --- records -------------------------------------------------------------------------

    def get_records(self, context: Context | None) -> Iterable[dict[str, Any]]:
        """Records window by window, hour by hour; the bookmark follows each completed hour."""
        start, end = self.first_hour_to_read(), self._run_end
        set_aside_stream = cast("UnreadableLinesStream", self._tap.streams[UNREADABLE_LINES])
        set_aside_stream.write_schema_once()  # now, so that the run's last line is a STATE
        mode = "files under " + self.config["export_path"] if self._local else "the Export API"
        if start >= end:
            self.logger.info("Nothing to read: already read up to %s", bookmark_text(start))
            return
        self.logger.info(
            "This run covers %s .. %s (exclusive, by server_upload_time) from %s",
            bookmark_text(start),
            bookmark_text(end),
            mode,
        )
        started = time.monotonic()
        progress = RangeProgress(start, end, now=started)
        total = 0
        try:
            set_aside = set_aside_stream.emit
            for ready in self._ready_windows(start, end):
                # A local file whose name gives no hour is read in each hour it holds, for
                # that hour's records only (sources.LocalSource; local windows are one hour).
                within = (ready.window.start, ready.window.end) if self._local else None
                count = 0
                read_started = time.monotonic()
                source = None if self._local else f"{API_SOURCE} {ready.window}"
                where = f"window {ready.window}"
                for hour in self._reading_plan(ready).hours:
                    for ref in hour.members:
                        aside = ref in ready.sets_aside
                        for record in read_member(
                            ref, where, self.line_stats, source, self.conform, within, aside
                        ):
                            if type(record) is dict:
                                count += 1
                                yield record
                            else:  # a line that is not one JSON object: the second stream
                                set_aside(cast("UnreadableLine", record))
                    if hour.checkpoint is not None:
                        self._checkpoint(hour.checkpoint)
                        self._say_progress(progress, hour.checkpoint, total + count)
                self._checkpoint(ready.window.end)
                total += count
                self._say_progress(progress, ready.window.end, total)
                done = (ready.window.end - start) / (end - start)
                self._log_window(ready, count, time.monotonic() - read_started, done)
            # The API's windows tile the whole range, so its bookmark now stands at `end`. Local
            # files stop at the last hour that has a file: files for later hours may still be
            # copied in (an S3 export lands hour by hour), and must not be skipped next run.
        finally:
            writer.flush()
        self._log_summary(total - self.line_stats.unwritable, time.monotonic() - started)

    def _say_progress(self, progress: RangeProgress, read_up_to: dt.datetime, events: int) -> None:
        line = progress.line(read_up_to, events)
        if line:
            self.logger.info(line)

    def _reading_plan(self, ready: ReadyWindow) -> ReadingPlan:
        """The window's members in hour order; says once per run when one cannot be placed."""
        plan = plan_window(ready.window, ready.members)
        window = ready.window
        # A one-hour window (every local one) has no checkpoint but its end: nothing to say.
        if plan.unplaced and not self._said_unplaced and window.end - window.start > HOUR:
            self._said_unplaced = True
            self.logger.info(
                "Member %s does not name an hour inside its window %s; such a window is "
                "bookmarked only at its end (said once per run)",
                plan.unplaced,
                ready.window,
            )
        return plan

    def _ready_windows(self, start: dt.datetime, end: dt.datetime) -> Iterable[ReadyWindow]:
        if self._local:
            remove_leftovers()  # no downloads in this mode, but earlier killed runs' remain
            yield from LocalSource(
                self.config["export_path"], Window(start, end), self.line_stats.skipped
            ).windows()
            return
        run_folder = RunFolder.create()  # also removes the folders of killed runs
        client = ExportClient(
            base_url=self._base_url,
            api_key=self.config["api_key"],
            secret_key=self.config["secret_key"],
            workdir=run_folder.path,
            request_timeout=float(self.config["request_timeout"]),
            max_retries=int(self.config["max_retries"]),
            retry_base_seconds=float(self.config["retry_base_seconds"]),
            stats=self.stats,
        )
        planner = WindowPlanner(
            start,
            end,
            target_bytes=int(self.config["target_window_mb"]) << 20,
            max_hours=self.config.get("window_hours"),
        )
        try:
            yield from ApiSource(client, planner, self.line_stats.skipped).windows()
        finally:
            client.close()
            run_folder.remove()

    @property
    def _run_end(self) -> dt.datetime:
        """Exclusive end hour of this run, decided once by the tap."""
        return cast("TapAmplitude", self._tap).end_hour

    @property
    def _base_url(self) -> str:
        return cast("TapAmplitude", self._tap).base_url

    @property
    def _local(self) -> bool:
        return bool(self.config.get("export_path"))

    def _log_window(
        self, ready: ReadyWindow, events: int, read_seconds: float, done: float
    ) -> None:
        """One line per window, at debug level (windows can be many and empty); the info
        lines are the hourly progress lines (range_progress.py) and the target's."""
        if not ready.members:
            self.logger.debug(
                "Window %s: no data (%.2f s); %.1f%% of the range read",
                ready.window,
                ready.seconds,
                100 * done,
            )
            return
        self.logger.debug(
            "Window %s: %d bytes, %d events, %.2f s download, %.2f s read; "
            "%.1f%% of the range read",
            ready.window,
            ready.size,
            events,
            ready.seconds,
            read_seconds,
            100 * done,
        )

    def _log_summary(self, events: int, seconds: float) -> None:
        stats = self.stats
        self.logger.info(
            "Done: %d events in %.1f s; %d requests, %d empty windows, %d splits, %d retries, "
            "%d bytes downloaded; %s",
            events,
            seconds,
            stats.requests,
            stats.empty_windows,
            stats.splits,
            stats.retries,
            stats.bytes,
            self.line_stats.summary(UNREADABLE_LINES),
        )
        fitted = self.conform.summary()
        if fitted:
            self.logger.info("Types fitted to the schema: %s", fitted)

    # --- output --------------------------------------------------------------------------

    def _write_record_message(self, record: Record) -> None:
        """Fast path: write the RECORD line straight from the parsed event.

        When nothing would change the record (no stream maps, every field selected), building
        the SDK's message objects and per-record type checks only cost time. The line is the
        same Singer RECORD message minus the optional ``time_extracted``. Otherwise the SDK's
        path runs, maps, selection and flattening included.
        """
        if self._fast_output is None:
            self._fast_output = self._can_write_fast()
        try:
            if not self._fast_output:
                super()._write_record_message(record)
                return
            writer.write_record(self._stream_alias, record)
        except orjson.JSONEncodeError as error:  # raised before any byte of it was written
            # The last line of defence: every text repair happens while reading (texts.py), but
            # a record no writer takes must never stop the migration for good.
            reason = f"its record cannot be written as a Singer message: {error}"
            stream = cast("UnreadableLinesStream", self._tap.streams[UNREADABLE_LINES])
            stream.emit(self.line_stats.set_aside_last(reason))
            return
        self.state_manager.is_flushed = False

    def _can_write_fast(self) -> bool:
        maps = self.stream_maps
        only_identity = len(maps) == 1 and type(maps[0]) is SameRecordTransform
        all_selected = all(self.mask[("properties", name)] for name in self.schema["properties"])
        flattening = bool(self.config.get("flattening_enabled"))
        self._stream_alias = maps[0].stream_alias
        return only_identity and all_selected and not flattening
