"""Amplitude's Dashboard REST API, event segmentation (`GET /api/2/events/segmentation`).

Served by the Export API stand-in (tests/testbed/amplitude.py) from the same ExportStore, so
its counts are what that Amplitude project holds. The contract (shared/reference/
counting-apis.md): Basic auth with the project's keys; `e` a JSON event definition
(`{"event_type": "_all"}` or a named event), `m=totals`, `i` `-3600000` (hourly, at most 7
days per query) or `1` (daily, at most 365), `start`/`end` `YYYYMMDD` inclusive; buckets in
**the project's time zone**, labelled in local wall time (a repeated hour after a DST change
appears twice, a skipped one not at all); at most 5 concurrent requests and an hourly query
budget, both answered with 429 naming the limit.

Counted as Amplitude's charts count: every record the project holds (`store.held_events()`:
also those whose export line a test spoiled), by event time; "any event" leaves out the `$identify`
and `$groupidentify` rows (user and group property updates, not events in a chart), rows
without an event type (missing, not a string, blank: a chart counts events by type) and rows
whose event_time is missing or not a time (a chart places an event in a bucket by its
event_time: such a row is in no bucket, hourly or daily). target-posthog-verify relies on
both: it counts neither against Amplitude (verify.py, verify_untimed.py).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import orjson

from tests.testbed.events import parse_utc

if TYPE_CHECKING:
    from tests.testbed.httpserver import Handler
    from tests.testbed.store import ExportStore

HOURLY = "-3600000"
DAILY = "1"
_MAX_DAYS = {HOURLY: 7, DAILY: 365}
NOT_IN_CHARTS = frozenset(("$identify", "$groupidentify"))


@dataclass(frozen=True)
class SegmentationRequest:
    """One segmentation request, as the stand-in saw and answered it."""

    params: dict[str, str]
    status: int


class Dashboard:
    """The Dashboard REST API's state: time zone, limits, faults, request log."""

    def __init__(self, time_zone: str = "UTC") -> None:
        self.time_zone = time_zone
        self.max_concurrent = 5
        self.queries_per_hour: int | None = None  # None: no hourly budget
        self.requests: list[SegmentationRequest] = []
        self._running = 0
        self._served: list[float] = []  # monotonic times of answered queries (the budget)
        self._lock = threading.Lock()

    def handle(
        self, handler: Handler, store: ExportStore, params: dict[str, str], authorized: bool
    ) -> None:
        with self._lock:
            self._running += 1
            too_many = self._running > self.max_concurrent
            now = time.monotonic()
            self._served = [t for t in self._served if now - t < 3600]
            over_budget = (
                self.queries_per_hour is not None and len(self._served) >= self.queries_per_hour
            )
            if not (too_many or over_budget):
                self._served.append(now)
        try:
            if not authorized:
                status, body = 401, "Invalid API key or secret key"
            elif too_many:
                status, body = 429, "Exceeded concurrent limit: at most 5 concurrent requests"
            elif over_budget:
                status, body = 429, "Exceeded rate limit: the project's hourly query cost budget"
            else:
                status, body = self._answer(store, params)
            with self._lock:
                self.requests.append(SegmentationRequest(dict(params), status))
            content_type = "application/json" if status == 200 else "text/plain; charset=utf-8"
            handler.answer(status, body, content_type=content_type)
        finally:
            with self._lock:
                self._running -= 1

    def _answer(self, store: ExportStore, params: dict[str, str]) -> tuple[int, str | bytes]:
        try:
            event = orjson.loads(params.get("e", ""))
            event_type = event["event_type"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return 400, "e must be a JSON event definition with an event_type"
        if params.get("m", "uniques") != "totals":
            return 400, "this stand-in answers m=totals only"
        interval = params.get("i", DAILY)
        if interval not in _MAX_DAYS:
            return 400, "this stand-in answers i=-3600000 (hourly) or i=1 (daily) only"
        try:
            start, end = _date(params["start"]), _date(params["end"])
        except (KeyError, ValueError):
            return 400, "start and end must be dates formatted as YYYYMMDD"
        if end < start:
            return 400, "end is before start"
        if (end - start).days + 1 > _MAX_DAYS[interval]:
            return 400, f"the range exceeds {_MAX_DAYS[interval]} days for this interval"
        labels, counts = self.buckets(store, event_type, interval, start, end)
        series = [counts.get(index, 0) for index in range(len(labels))]
        data = {
            "series": [series],
            "seriesLabels": [0],
            "seriesCollapsed": [[{"setId": "", "value": sum(series)}]],
            "xValues": labels,
        }
        return 200, orjson.dumps({"data": data})

    def buckets(
        self, store: ExportStore, event_type: str, interval: str, start: date, end: date
    ) -> tuple[list[str], Counter[int]]:
        """Bucket labels (local wall time) and the count of events in each, by index."""
        zone = ZoneInfo(self.time_zone)
        first = datetime(start.year, start.month, start.day, tzinfo=zone).astimezone(UTC)
        last = datetime(end.year, end.month, end.day, tzinfo=zone) + timedelta(days=1)
        stop = last.astimezone(UTC)
        labels: list[str] = []
        index_of: dict[tuple[str, Any], int] = {}
        moment = first
        while moment < stop:  # quarter hours: every zone's offset is a multiple of 15 min
            key = _bucket(moment, zone, interval)
            if key not in index_of:
                index_of[key] = len(labels)
                labels.append(key[0])
            moment += timedelta(minutes=15)
        counts: Counter[int] = Counter()
        for record in store.held_events():
            kind = record.get("event_type")
            if not isinstance(kind, str) or not kind.strip() or kind in NOT_IN_CHARTS:
                continue
            if event_type != "_all" and kind != event_type:
                continue
            when = parse_utc(record.get("event_time"))
            if when is not None and first <= when < stop:
                counts[index_of[_bucket(when, zone, interval)]] += 1
        return labels, counts


def _bucket(moment: datetime, zone: ZoneInfo, interval: str) -> tuple[str, Any]:
    """The local bucket of a UTC moment: its label, and the offset (two hours after a DST
    change share a label, not an offset)."""
    local = moment.astimezone(zone)
    if interval == HOURLY:
        # isoformat: a 4-digit year also before 1000, as Amplitude writes it
        return f"{local.date().isoformat()}T{local:%H}:00:00", local.utcoffset()
    return local.date().isoformat(), None


def _date(value: str) -> date:
    if len(value) != 8 or not value.isdigit():
        raise ValueError(value)
    return date.fromisoformat(value)
