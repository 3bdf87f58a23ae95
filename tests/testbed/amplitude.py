"""A stand-in for Amplitude's Export API (`GET /api/2/export`), serving an ExportStore.

The same store's counts are served by the Dashboard REST API's event segmentation
(`GET /api/2/events/segmentation`, tests/testbed/dashboard.py).

It keeps the real contract (see shared/reference/amplitude-export-api.md): Basic auth, whole
inclusive UTC hours selected by server_upload_time, 404 for no data, 400 for ranges over 365
days or exports that are too large, a ZIP of gzip members otherwise. Tests add size thresholds,
hours that always fail, and one-shot faults, and read the request log.
"""

from __future__ import annotations

import base64
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.testbed.dashboard import Dashboard
from tests.testbed.faults import Fault, FaultQueue
from tests.testbed.httpserver import Handler, StandInServer
from tests.testbed.store import ExportStore

_HOUR_PARAM = re.compile(r"^\d{8}T\d{2}$")
_MAX_RANGE = timedelta(days=365)
_CHUNK = 1 << 20
_ERROR_PAGE = (
    "<!DOCTYPE html><html><head><title>Error</title></head>"
    "<body>Something went wrong.</body></html>"
)


@dataclass(frozen=True)
class ExportRequest:
    """One request to the export endpoint, as the stand-in saw and answered it."""

    start: datetime | None  # None when the parameter was missing or malformed
    end: datetime | None
    status: int | None  # None: the connection was closed without an answer
    bytes_sent: int  # body bytes actually written
    fault: Fault | None
    received_at: float = 0.0  # time.time()
    path: str = ""


def parse_hour_param(value: str) -> datetime | None:
    """`YYYYMMDDTHH` as an aware UTC hour, or None if malformed."""
    if not _HOUR_PARAM.match(value):
        return None
    try:
        return datetime.strptime(value, "%Y%m%dT%H").replace(tzinfo=UTC)
    except ValueError:
        return None


class AmplitudeStandIn(StandInServer):
    """Export API on 127.0.0.1; use as a context manager, then point a tap at `.url`."""

    def __init__(
        self,
        store: ExportStore,
        api_key: str = "amp-test-key",
        secret_key: str = "amp-test-secret",
    ) -> None:
        super().__init__()
        self.store = store
        self.api_key = api_key
        self.secret_key = secret_key
        self.max_export_bytes: int | None = None  # above: 400 "export too large"
        self.timeout_export_bytes: int | None = None  # above: 504 (a gateway timeout)
        self.always_fail_hours: set[datetime] = set()  # a range containing one: 504
        # A range containing one: 200 with an HTML error page for a body (seen from Amplitude's
        # front end when the export behind it fails), on every try.
        self.error_page_hours: set[datetime] = set()
        self.faults = FaultQueue()
        # The Dashboard REST API's event segmentation, counting this store (dashboard.py).
        self.dashboard = Dashboard()
        # Hook for crash drills: called with the request's ordinal (1-based) as an export
        # request arrives, on the request's own thread, before any fault or answer.
        self.on_received: Callable[[int], None] | None = None
        self._received = 0
        self._requests: list[ExportRequest] = []
        self._lock = threading.Lock()
        self._tmpdir: Path | None = None
        expected = f"{api_key}:{secret_key}".encode()
        self._expected_auth = "Basic " + base64.b64encode(expected).decode()

    def inject(self, fault: Fault, times: int = 1) -> None:
        """Have the next `times` export requests misbehave as `fault` (FIFO with other faults)."""
        self.faults.inject(fault, times)

    def clear_faults(self) -> None:
        """Drop the faults not yet consumed."""
        self.faults.clear()

    @property
    def requests(self) -> list[ExportRequest]:
        with self._lock:
            return list(self._requests)

    def start(self) -> AmplitudeStandIn:
        self._tmpdir = Path(tempfile.mkdtemp(prefix="amplitude-standin-"))
        super().start()
        return self

    def stop(self) -> None:
        super().stop()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def _log(self, request: ExportRequest) -> int:
        with self._lock:
            self._requests.append(request)
            return len(self._requests) - 1

    def _correct_bytes_sent(self, index: int, sent: int) -> None:
        """The client left mid-download: log what was really sent."""
        with self._lock:
            self._requests[index] = replace(self._requests[index], bytes_sent=sent)

    @staticmethod
    def _holds_one_of(hours: set[datetime], start: datetime, end: datetime) -> bool:
        for hour in hours:
            aware = hour if hour.tzinfo else hour.replace(tzinfo=UTC)
            if start <= aware <= end:
                return True
        return False

    def handle_export(self, handler: Handler) -> None:
        received_at = time.time()
        url = urlsplit(handler.path)
        if url.path.rstrip("/") == "/api/2/events/segmentation":
            params = {name: values[0] for name, values in parse_qs(url.query).items()}
            authorized = handler.headers.get("Authorization") == self._expected_auth
            self.dashboard.handle(handler, self.store, params, authorized)
            return
        if url.path.rstrip("/") != "/api/2/export":
            handler.answer(404, "not found")
            return
        with self._lock:
            self._received += 1
            ordinal = self._received
        if self.on_received is not None:
            self.on_received(ordinal)
        params = parse_qs(url.query)
        start = parse_hour_param(params.get("start", [""])[0])
        end = parse_hour_param(params.get("end", [""])[0])
        fault = self.faults.take()

        def finish(status: int | None, sent: int) -> int:
            # Logged before answering: a client may read .requests as soon as it has the answer.
            return self._log(
                ExportRequest(start, end, status, sent, fault, received_at, handler.path)
            )

        def reply(status: int, text: str, headers: dict[str, str] | None = None) -> None:
            finish(status, len(text.encode()))
            handler.answer(status, text, headers=headers)

        if fault is not None:
            if fault.kind == "drop":
                finish(None, 0)
                handler.hang_up()
                return
            if fault.kind == "status":
                retry_after = fault.retry_after_header()
                headers = {"Retry-After": retry_after} if retry_after else None
                reply(fault.code or 500, f"injected status {fault.code}", headers)
                return
            if fault.kind == "delay":
                time.sleep(fault.seconds)

        if handler.headers.get("Authorization") != self._expected_auth:
            reply(401, "Invalid API key or secret key")
            return
        if start is None or end is None:
            reply(400, "start and end must be hours formatted as YYYYMMDDTHH")
            return
        if end < start:
            reply(400, "end is before start")
            return
        if end - start > _MAX_RANGE:
            reply(400, "the range exceeds 365 days")
            return
        if not self.store.members(start, end):
            reply(404, "Raw data files were not found.")
            return
        if self._holds_one_of(self.always_fail_hours, start, end):
            reply(504, "Gateway Timeout")
            return
        if self._holds_one_of(self.error_page_hours, start, end):
            reply(200, _ERROR_PAGE)
            return
        size = self.store.export_bytes(start, end)
        if self.max_export_bytes is not None and size > self.max_export_bytes:
            reply(400, "export too large: the export exceeds the size limit, use a smaller range")
            return
        if self.timeout_export_bytes is not None and size > self.timeout_export_bytes:
            reply(504, "Gateway Timeout")
            return
        self._send_zip(handler, start, end, fault, lambda planned: finish(200, planned))

    def _send_zip(
        self,
        handler: Handler,
        start: datetime,
        end: datetime,
        fault: Fault | None,
        log: Callable[[int], int],
    ) -> None:
        """Build the zip in a temp file, log the request, stream it (half, for a truncate or
        stall fault)."""
        cut_short = fault is not None and fault.kind in ("truncate", "stall")
        assert self._tmpdir is not None
        with tempfile.TemporaryFile(dir=self._tmpdir) as archive:
            self.store.write_zip_to(archive, start, end)
            size = archive.tell()
            archive.seek(0)
            limit = size // 2 if cut_short else size
            index = log(limit)
            handler.send_response(200)
            handler.send_header("Content-Type", "application/zip")
            handler.send_header("Content-Length", str(size))
            handler.end_headers()
            sent = 0
            try:
                while sent < limit:
                    chunk = archive.read(min(_CHUNK, limit - sent))
                    if not chunk:
                        break
                    handler.wfile.write(chunk)
                    sent += len(chunk)
            except OSError:  # the client went away mid-download
                handler.close_connection = True
                self._correct_bytes_sent(index, sent)
                return
        if fault is not None and fault.kind == "stall":
            handler.wfile.flush()
            time.sleep(fault.seconds)
        if cut_short:
            handler.hang_up()


class _AmplitudeHandler(Handler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        owner = self.server.owner
        assert isinstance(owner, AmplitudeStandIn)
        owner.handle_export(self)


AmplitudeStandIn.handler_class = _AmplitudeHandler
