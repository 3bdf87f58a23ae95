"""The verification's HTTP requests to the counting APIs: JSON, retries, and what it tells the
user while it waits (counts.py has the two APIs, Amplitude's Dashboard REST API and PostHog's
query API).

429, 5xx and dropped connections are retried with backoff, never sooner than Retry-After
(client.py's RetryPolicy); each wait is one line (which API, the status, how long, attempt n
of m), so a rate limit is never minutes of silence. A limit that outlasts the retries, or
asks for a wait longer than `MAX_WAIT_SECONDS`, stops the verification with one line saying
which limit and when to run again. A long count says how far it is (queries done of the
planned total) at most every `PROGRESS_SECONDS`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
import requests

from target_posthog.client import MAX_RETRY_AFTER_SECONDS, RetryPolicy, parse_retry_after

Say = Callable[[str], None]
_RETRYABLE = frozenset((429, 500, 502, 503, 504))
MAX_WAIT_SECONDS = 300.0  # a Retry-After beyond this: stop and say when to run again
PROGRESS_SECONDS = 30.0  # at most one progress line per API this often
clock = time.monotonic  # the progress lines' clock (tests step it; nothing sleeps on it)


class CountingError(Exception):
    """A count cannot be had; the message is one line for the user, without any key."""


class JsonApi:
    """GET/POST JSON with retries; subclasses turn final errors into one clear line."""

    service = ""

    def __init__(self, timeout: float, retry: RetryPolicy, say: Say | None = None) -> None:
        self._timeout = timeout
        self._retry = retry
        self._say = say or (lambda line: None)
        self._session = requests.Session()
        self.requests_sent = 0
        self.retries = 0  # counted in the summary; each wait is also said as it starts
        self.planned = 0  # queries the count will take (0: unknown, no progress lines)
        self._done = 0
        self._said_at = 0.0

    def plan(self, queries: int) -> None:
        """The number of queries about to be sent, for the progress lines."""
        self.planned, self._done, self._said_at = queries, 0, clock()

    def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        answer = self._attempts(method, url, **kwargs)
        self._done += 1
        now = clock()
        if self._done < self.planned and now - self._said_at >= PROGRESS_SECONDS:
            self._said_at = now
            self._say(f"{self.service}: {self._done} of {self.planned} queries done")
        return answer

    def _attempts(self, method: str, url: str, **kwargs: Any) -> Any:
        problem = limited = ""
        attempts = self._retry.max_retries + 1
        for attempt in range(attempts):
            if attempt:
                self.retries += 1
            retry_after: float | None = None
            try:
                response = self._session.request(method, url, timeout=self._timeout, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = f"{type(exc).__name__} talking to {url}"
                status = f"could not be reached ({type(exc).__name__})"
            else:
                self.requests_sent += 1
                if response.status_code == 200:
                    try:
                        return orjson.loads(response.content)
                    except orjson.JSONDecodeError:
                        raise CountingError(
                            f"{self.service} answered 200 with a body that is not JSON at {url}"
                        ) from None
                detail = _detail(response)
                if response.status_code not in _RETRYABLE:
                    raise CountingError(self._refusal(response.status_code, detail, url))
                problem = status = f"answered {response.status_code} ({detail})"
                limited = detail if response.status_code == 429 else ""
                header = response.headers.get("Retry-After")
                retry_after = parse_retry_after(header)
                if limited and (retry_after or 0) >= min(MAX_WAIT_SECONDS, MAX_RETRY_AFTER_SECONDS):
                    asked = float(header) if header and header.isdigit() else retry_after
                    raise CountingError(self._limited(detail, asked, attempt))
            if attempt < self._retry.max_retries:
                delay = self._retry.delay(attempt, retry_after)
                self._say(
                    f"{self.service} {status}: waiting {delay:.1f} s, then attempt "
                    f"{attempt + 2} of {attempts}"
                )
                time.sleep(delay)
        if limited:
            raise CountingError(self._limited(limited, None, self._retry.max_retries))
        raise CountingError(
            f"{self.service} kept failing after {attempts} attempts "
            f"(last: {problem}); run the verification again later"
        )

    def _refusal(self, status: int, detail: str, url: str) -> str:
        return f"{self.service} answered {status} at {url}: {detail}"

    def _limited(self, detail: str, retry_after: float | None, retries: int) -> str:
        raise NotImplementedError

    def close(self) -> None:
        self._session.close()


def _detail(response: requests.Response) -> str:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text[:200].strip()
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return str(body["detail"])[:200]
    return response.text[:200].strip()


def waited(retries: int, retry_after: float | None) -> str:
    """How long the verification waited for a rate limit, and what the service asks."""
    said = f"; {retries} {'retry' if retries == 1 else 'retries'} with backoff" if retries else ""
    return said + (f"; it asks to wait {retry_after:.0f} s" if retry_after else "")
