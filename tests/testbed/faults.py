"""Faults the stand-in servers can inject, and the FIFO queue they are consumed from.

A test injects faults before (or while) a client talks to a stand-in; each request to the
stand-in's main endpoint takes the next fault, if any, so faults fire exactly as many times as
they were injected and then clear.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    """One misbehaviour of a server, applied to a single request."""

    kind: str  # "status" | "truncate" | "stall" | "drop" | "lose_ack" | "delay"
    code: int | None = None
    retry_after: float | None = None
    seconds: float = 0.0

    @classmethod
    def status(cls, code: int, retry_after: float | None = None) -> Fault:
        """Answer `code` (e.g. 429, 500, 503) instead of serving; with a Retry-After if given."""
        return cls("status", code=code, retry_after=retry_after)

    @classmethod
    def truncate(cls) -> Fault:
        """Send the full Content-Length but only half the body, then close the connection."""
        return cls("truncate")

    @classmethod
    def stall(cls, seconds: float) -> Fault:
        """Send the headers and half the body, go quiet for `seconds`, then close."""
        return cls("stall", seconds=seconds)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without answering (and without doing the work)."""
        return cls("drop")

    @classmethod
    def lose_ack(cls) -> Fault:
        """Do the work (store the batch), then close the connection without answering."""
        return cls("lose_ack")

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Answer normally, but only after `seconds`."""
        return cls("delay", seconds=seconds)

    def retry_after_header(self) -> str | None:
        """The Retry-After header value: whole seconds when whole, else a decimal."""
        if self.retry_after is None:
            return None
        value = float(self.retry_after)
        return str(int(value)) if value.is_integer() else f"{value:g}"


class FaultQueue:
    """Thread-safe FIFO of pending faults; each `take()` consumes one."""

    def __init__(self) -> None:
        self._pending: deque[Fault] = deque()
        self._lock = threading.Lock()

    def inject(self, fault: Fault, times: int = 1) -> None:
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._pending.extend([fault] * times)

    def take(self) -> Fault | None:
        with self._lock:
            return self._pending.popleft() if self._pending else None

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)
