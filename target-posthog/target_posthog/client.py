"""PostHog batch HTTP client: one gzip POST to `{host}/batch/`, classified and retried.

Status classes (PostHog capture's v0 contract):
- 2xx accepted; 400 the batch was refused as a whole (a bad event, or too big after
  decompression) and 413 the body was too big: both returned to the caller, who splits;
- 408, 429, 5xx, timeouts and dropped connections: retried with exponential backoff and
  jitter, never sooner than Retry-After, at most `max_retries` times;
- 401/403 (wrong project API key) and any other answer: fatal at once.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import orjson
import requests
from isal import isal_zlib

GZIP_LEVEL = 1  # isal's fast level: ~40x faster than zlib's, and bodies stay well compressed
MAX_RETRY_AFTER_SECONDS = 600.0  # a Retry-After beyond this is treated as this
_RETRYABLE_STATUS = frozenset((408, 429, 500, 502, 503, 504))
_ABANDONED = "stopping: batch abandoned before PostHog confirmed it"
_TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


class DeliveryError(Exception):
    """Delivery cannot go on; the message is for the user and never contains the api_key."""


class DeliveryAbandonedError(DeliveryError):
    """Shutting down (signal): a batch was given up before PostHog confirmed it."""


class Answer(NamedTuple):
    """PostHog's final answer to one batch: accepted (2xx), or refused as a whole."""

    status: int
    text: str

    @property
    def accepted(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int
    backoff_seconds: float
    max_backoff_seconds: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter; never below Retry-After (no hot loop in 429 storms)."""
        ceiling = min(self.max_backoff_seconds, self.backoff_seconds * 2**attempt)
        backoff = ceiling / 2 + random.uniform(0, ceiling / 2)
        return max(backoff, retry_after or 0.0)


class PostHogClient:
    """Sends encoded events as one `/batch/` request; thread-safe (one Session per thread)."""

    def __init__(
        self,
        *,
        host: str,
        api_key: str,
        historical_migration: bool,
        request_timeout: float,
        retry: RetryPolicy,
        stopping: threading.Event,
        on_retry: Callable[[str], None],
        user_agent: str,
    ) -> None:
        self.url = host.rstrip("/") + "/batch/"
        self._api_key = api_key
        self._body_head = (
            b'{"api_key":'
            + orjson.dumps(api_key)
            + b',"historical_migration":'
            + (b"true" if historical_migration else b"false")
            + b',"batch":['
        )
        self._body_tail = b"]}"
        self._timeout = request_timeout
        self._retry = retry
        self._stopping = stopping
        self._on_retry = on_retry
        self._headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "User-Agent": user_agent,
        }
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        self.requests_sent = 0
        self.bytes_sent = 0

    def __repr__(self) -> str:  # never show the key
        return f"PostHogClient(url={self.url!r})"

    def compressed_body(self, joined_events: memoryview) -> bytes:
        """The gzip request body, streamed through the compressor (no uncompressed copy)."""
        compressor = isal_zlib.compressobj(GZIP_LEVEL, wbits=31)  # 31: gzip framing
        return b"".join(
            (
                compressor.compress(self._body_head),
                compressor.compress(joined_events),
                compressor.compress(self._body_tail),
                compressor.flush(),
            )
        )

    def send(self, joined_events: memoryview) -> Answer:
        """POST until PostHog gives a final answer; raise DeliveryError when it never does."""
        compressed = self.compressed_body(joined_events)
        last_problem = ""
        for attempt in range(self._retry.max_retries + 1):
            if self._stopping.is_set():
                raise DeliveryAbandonedError(_ABANDONED)
            retry_after: float | None = None
            try:
                response = self._session().post(
                    self.url, data=compressed, headers=self._headers, timeout=self._timeout
                )
            except _TRANSIENT_ERRORS as exc:
                last_problem = f"{type(exc).__name__} talking to {self.url}"
            else:
                self.requests_sent += 1
                self.bytes_sent += len(compressed)
                status = response.status_code
                text = self._redact(response.text[:1000])
                if 200 <= status < 300 or status in (400, 413):
                    return Answer(status, text)
                if status in (401, 403):
                    raise DeliveryError(
                        f"PostHog refused the project API key ({status}) at {self.url}: check "
                        "`api_key` is the project API key (phc_...) of the project on this host"
                    )
                if status not in _RETRYABLE_STATUS:
                    raise DeliveryError(
                        f"PostHog answered {status} at {self.url}, which is not retryable: "
                        f"{text[:200]!r}; check `host`"
                    )
                last_problem = f"PostHog answered {status}"
                asked = response.headers.get("Retry-After")
                retry_after = parse_retry_after(asked)
                if retry_after == MAX_RETRY_AFTER_SECONDS:
                    last_problem += (
                        f" (it asked to wait {asked!r}; waiting at most "
                        f"{MAX_RETRY_AFTER_SECONDS:.0f} s)"
                    )
            if attempt < self._retry.max_retries:
                wait = self._retry.delay(attempt, retry_after)
                # Said now, with the wait, not after it: a long Retry-After looked like a stall.
                self._on_retry(f"{last_problem}; retrying in {wait:.0f} s")
                if self._stopping.wait(wait):
                    raise DeliveryAbandonedError(_ABANDONED)
        raise DeliveryError(
            f"PostHog did not accept a batch after {self._retry.max_retries + 1} attempts "
            f"(last: {last_problem}): PostHog is down or refusing for now; run again later "
            "(or raise max_retries / request_timeout)"
        )

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(
                pool_connections=1, pool_maxsize=1, max_retries=0
            )
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "[api_key]") if self._api_key else text

    def close(self) -> None:
        with self._sessions_lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), capped."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)
