"""Amplitude Export API client: one window in, one zip on disk out, under one retry policy.

Every answer is classified here, once:
- 200: the zip is streamed to a temporary file in chunks (an export can weigh gigabytes) and
  checked for completeness (Content-Length, a readable zip directory);
- 404: no data in the range;
- 400 (export too large) and 504 on a multi-hour window (too heavy to assemble in time): the
  caller splits the window;
- 401/403: wrong keys or wrong region, fatal at once;
- 429, 5xx, connection errors, timeouts, truncated or unreadable archives: retried with
  exponential backoff and jitter, honouring Retry-After, up to ``max_retries`` times; a 200
  body that is still not a zip after that (an HTML error page) is split like a 400.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
import zipfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import backoff
import requests

from tap_amplitude.windows import Window, api_hour
from tap_amplitude.writer import write_all

REGION_URLS = {
    "us": "https://amplitude.com",
    "eu": "https://analytics.eu.amplitude.com",
}
EXPORT_PATH = "/api/2/export"
CHUNK_BYTES = 1 << 20
MAX_BACKOFF_SECONDS = 300.0
MAX_ERROR_BODY = 64 * 1024
USER_AGENT = "tap-amplitude (Singer tap; Amplitude -> PostHog migration toolkit)"

logger = logging.getLogger("tap-amplitude")


class TransientExportError(Exception):
    """Worth retrying: throttling, a server hiccup, a dropped or truncated download."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class WindowRejectedError(Exception):
    """Amplitude will not serve this range as asked (too large, or too slow): split it."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status


class FatalExportError(Exception):
    """Retrying cannot help; the message says what to change."""


class RetriesExhaustedError(FatalExportError):
    """A transient failure that outlasted the retry budget."""


class UnreadableBodyError(RetriesExhaustedError):
    """Every answer was a 200 whose body is not a readable zip (e.g. an HTML error page):
    split like a 400/504, down to the one hour that causes it."""


class _UnreadableBodyError(TransientExportError):
    """One 200 answer whose body is not a zip; retried, as a download can arrive damaged."""


@dataclass
class ExportStats:
    """Counters for the end-of-run summary (only the download thread writes them)."""

    requests: int = 0
    retries: int = 0
    empty_windows: int = 0
    splits: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class Download:
    """One window's answer: a zip on disk, or ``path=None`` when Amplitude had no data."""

    window: Window
    path: Path | None
    size: int
    seconds: float


@contextlib.contextmanager
def _disk_errors_named(path: Path, window: Window) -> Iterator[None]:
    """An OSError from the local disk becomes a fatal error naming the folder, the window and
    what to do (only file calls are wrapped: requests' network errors are OSErrors too)."""
    try:
        yield
    except OSError as error:
        msg = (
            f"window {window}: cannot write the downloaded export to {path.parent} "
            f"({error.strerror or error}). Free space there, or set TMPDIR to a disk with room "
            "for one window (about target_window_mb)"
        )
        raise FatalExportError(msg) from error


def _retry_after(response: requests.Response) -> float | None:
    """Retry-After in seconds (only the delta-seconds form; Amplitude sends no dates)."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _body_kind(path: Path) -> str:
    """What an unreadable body looks like, from its first bytes (never its content)."""
    with path.open("rb") as file:
        head = file.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "; the body is an HTML page"
    if head.startswith((b"{", b"[")):
        return "; the body is JSON"
    return ""


def _short_text(response: requests.Response) -> str:
    """The start of an error answer's body, on one line (error bodies are short texts)."""
    try:
        text = response.raw.read(MAX_ERROR_BODY, decode_content=True).decode(errors="replace")
        text = text.strip().replace("\n", " ")
    except (requests.RequestException, OSError):
        return response.reason or ""
    return text[:200] or (response.reason or "")


class ExportClient:
    """Downloads export windows to files under ``workdir``."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        secret_key: str,
        workdir: Path,
        request_timeout: float,
        max_retries: int,
        retry_base_seconds: float,
        stats: ExportStats | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + EXPORT_PATH
        self.workdir = workdir
        self.request_timeout = request_timeout
        self.max_retries = max_retries
        self.retry_base_seconds = retry_base_seconds
        self.stats = stats or ExportStats()
        self.session = requests.Session()
        self.session.auth = (api_key, secret_key)
        self.session.headers["User-Agent"] = USER_AGENT

    def __repr__(self) -> str:  # never show the session (and its credentials)
        return f"ExportClient(url={self.url!r})"

    def close(self) -> None:
        self.session.close()

    def download(self, window: Window) -> Download:
        """The window's export, retried under the policy above.

        Raises:
            WindowRejectedError: Amplitude wants a narrower range.
            FatalExportError: bad credentials/region, an unexpected status, or retries exhausted.
        """
        attempt = backoff.on_exception(
            self._waits,
            TransientExportError,
            max_tries=self.max_retries + 1,
            jitter=None,  # applied in _waits, so that Retry-After is honoured exactly
            on_backoff=self._log_retry,
            raise_on_giveup=True,
            # backoff's own "Giving up ..." ERROR line is not the end: the window is split, or
            # the stop says it all in one line; its retry lines are ours (_log_retry).
            logger=None,
        )(self._download_once)
        try:
            return attempt(window)
        except _UnreadableBodyError as error:
            msg = f"window {window}: answer still not a zip after {self.max_retries} retries"
            raise UnreadableBodyError(f"{msg}: {error}") from error
        except TransientExportError as error:
            msg = f"window {window}: still failing after {self.max_retries} retries: {error}"
            raise RetriesExhaustedError(msg) from error

    def _waits(self) -> Generator[float, Any, None]:
        """Backoff waits: base * 2^n with jitter, or exactly what Retry-After asks for.

        backoff sends each failure's exception into this generator before asking for the wait.
        """
        error = yield  # type: ignore[misc]  # primed by backoff with None
        retry = 0
        while True:
            retry_after = getattr(error, "retry_after", None)
            if retry_after is not None:
                wait = float(retry_after)
            else:
                ceiling = min(MAX_BACKOFF_SECONDS, self.retry_base_seconds * 2**retry)
                wait = random.uniform(ceiling / 2, ceiling)
            retry += 1
            error = yield wait

    def _log_retry(self, details: Any) -> None:
        self.stats.retries += 1
        window = details["args"][0]
        logger.warning(
            "Export window %s: %s; retry %d of %d in %.1f s",
            window,
            details.get("exception"),
            details["tries"],
            self.max_retries,
            details["wait"],
        )

    def _download_once(self, window: Window) -> Download:
        started = time.monotonic()
        params = {"start": api_hour(window.start), "end": api_hour(window.last_hour)}
        self.stats.requests += 1
        try:
            with self.session.get(
                self.url, params=params, stream=True, timeout=self.request_timeout
            ) as response:
                status = response.status_code
                if status == 200:
                    path, size = self._save(response, window)
                    self.stats.bytes += size
                    return Download(window, path, size, time.monotonic() - started)
                self._raise_for(status, response, window)
        except (requests.ConnectionError, requests.Timeout) as error:
            # requests' messages carry only host and path, never the Basic-auth header.
            msg = f"{type(error).__name__}: {error}"
            raise TransientExportError(msg) from error
        except requests.RequestException as error:  # e.g. ChunkedEncodingError mid-body
            msg = f"download interrupted ({type(error).__name__})"
            raise TransientExportError(msg) from error
        self.stats.empty_windows += 1
        return Download(window, None, 0, time.monotonic() - started)

    def _raise_for(self, status: int, response: requests.Response, window: Window) -> None:
        """Classify a non-200 answer; returns only for 404 (no data)."""
        detail = _short_text(response)  # also reads the (small) body: the connection is reused
        if status == 404:
            return
        if status == 400:
            raise WindowRejectedError(status, detail)
        if status == 504 and window.hours > 1:
            raise WindowRejectedError(status, "gateway timeout on a wide range")
        if status in {401, 403}:
            msg = (
                f"Amplitude refused the credentials (HTTP {status}). Check api_key and "
                "secret_key, and that data_region (us or eu) is the region of this project."
            )
            raise FatalExportError(msg)
        if status == 429 or status >= 500:
            msg = f"HTTP {status} {response.reason or ''}".strip()
            raise TransientExportError(msg, retry_after=_retry_after(response))
        msg = f"window {window}: unexpected HTTP {status}: {detail}"
        raise FatalExportError(msg)

    def _save(self, response: requests.Response, window: Window) -> tuple[Path, int]:
        """Stream the body to disk; a short or unreadable archive is a transient failure, a
        disk that refuses the bytes (full, over quota, read-only) a fatal one."""
        path = self.workdir / f"export-{api_hour(window.start)}-{window.hours}h.zip"
        size = 0
        try:
            # Unbuffered: every write reaches the OS at once, so a full disk fails that write
            # (named below) and never a later flush inside unrelated code.
            with _disk_errors_named(path, window):
                file = path.open("wb", buffering=0)
            with file:
                for chunk in response.iter_content(CHUNK_BYTES):
                    with _disk_errors_named(path, window):
                        write_all(file.fileno(), chunk)
                    size += len(chunk)
            expected = response.headers.get("Content-Length")
            if expected is not None and expected.isdigit() and int(expected) != size:
                msg = f"truncated download: {size} of {expected} bytes"
                raise TransientExportError(msg)
            try:
                with zipfile.ZipFile(path):
                    pass  # reading the central directory proves the archive is whole
            except zipfile.BadZipFile as error:
                msg = f"archive unreadable ({error}{_body_kind(path)})"
                raise _UnreadableBodyError(msg) from error
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path, size
