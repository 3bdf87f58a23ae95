"""PostHog's query API (`POST /api/projects/{project_id}/query/`), answering HogQL counts.

Served by the PostHog stand-in (tests/testbed/posthog.py) from the events it stored, so the
counts are what that PostHog project holds. The contract (shared/reference/counting-apis.md):
`Authorization: Bearer <personal API key>` (401 otherwise; the project token cannot query),
a project id the key can see (404 otherwise), body `{"query": {"kind": "HogQLQuery",
"query": "..."}}`, answer `{"results", "columns", "types", "hasMore"}`, errors as JSON with a
`detail`, about 120 queries an hour per key (429 with Retry-After beyond), at most 50,000
rows a query.

A stand-in cannot run any HogQL: it answers the one query shape the verification sends, a
count per hour or day of the events with a given `analytics_source` in a time range, and the
ones the target sends with `existing_properties: keep` (the persons of some distinct_ids, the
groups of some keys, with their properties), and answers 400 (as PostHog does for a query
it cannot parse) to anything else.
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from tests.testbed.events import parse_utc
from tests.testbed.faults import FaultQueue
from tests.testbed.httpserver import Handler

QUERY_PATH = re.compile(r"^/api/projects/(\d+)/query/?$")
MAX_ROWS = 50_000
_TIME = r"toDateTime\('(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})',\s*'UTC'\)"
_COUNT_QUERY = re.compile(
    r"^\s*SELECT\s+(toStartOfHour|toStartOfDay)\(toTimeZone\(timestamp,\s*'UTC'\)\)\s+AS\s+(\w+),"
    r"\s*count\((DISTINCT\s+uuid)?\)\s+AS\s+(\w+)\s+FROM\s+events\s+"
    r"WHERE\s+properties\.analytics_source\s*=\s*'([^']*)'\s+"
    r"(?:AND\s+isNull\(properties\.(\w+)\)\s+)?"
    rf"AND\s+timestamp\s*>=\s*{_TIME}\s+AND\s+timestamp\s*<\s*{_TIME}\s+"
    r"GROUP\s+BY\s+\2\s+ORDER\s+BY\s+\2\s+LIMIT\s+(\d+)\s*$",
    re.IGNORECASE,
)


# The one person query the target sends (target_posthog/person_reader.py, existing_properties
# keep): each distinct_id's person properties (a JSON text, as HogQL returns a JSON column).
_PERSONS_QUERY = re.compile(
    r"^\s*SELECT\s+distinct_id,\s*person\.properties\s+FROM\s+person_distinct_ids\s+"
    r"WHERE\s+distinct_id\s+IN\s+\((.*)\)\s+LIMIT\s+(\d+)\s*$",
    re.IGNORECASE | re.DOTALL,
)
_GROUPS_QUERY = re.compile(
    r"^\s*SELECT\s+key,\s*properties\s+FROM\s+groups\s+"
    r"WHERE\s+key\s+IN\s+\((.*)\)\s+LIMIT\s+(\d+)\s*$",
    re.IGNORECASE | re.DOTALL,
)
_LITERAL = re.compile(r"'((?:[^'\\]|\\.)*)'")
# (table, ids) -> [id, properties as JSON text] of those the stand-in holds
PersonLookup = Callable[[str, list[str]], list[list[Any]]]


@dataclass(frozen=True)
class QueryRequest:
    """One query request, as the stand-in saw and answered it."""

    project_id: str
    query: str
    status: int


class QueryApi:
    """The query API's state: key, project, hourly budget, faults, request log."""

    def __init__(self, personal_api_key: str, project_id: int) -> None:
        self.personal_api_key = personal_api_key
        self.project_id = project_id
        self.queries_per_hour: int | None = 120
        self.faults = FaultQueue()  # consumed by query requests only (not by /batch/)
        self.requests: list[QueryRequest] = []
        self._served: list[float] = []
        self._lock = threading.Lock()

    def handle(
        self,
        handler: Handler,
        project_id: str,
        body: bytes,
        events: Callable[[], list[dict[str, Any]]],
        persons: PersonLookup | None = None,
    ) -> None:
        """`persons(table, ids)`: the persons (by distinct_id) or groups (by key) known."""
        status, answer, headers = self._answer(handler, project_id, body, events, persons)
        with self._lock:
            self.requests.append(QueryRequest(project_id, _query_text(body), status))
        handler.answer(status, orjson.dumps(answer), "application/json", headers)

    def _answer(
        self,
        handler: Handler,
        project_id: str,
        body: bytes,
        events: Callable[[], list[dict[str, Any]]],
        persons: PersonLookup | None = None,
    ) -> tuple[int, dict[str, Any], dict[str, str] | None]:
        fault = self.faults.take()
        if fault is not None and fault.kind == "status":
            retry_after = fault.retry_after_header()
            headers = {"Retry-After": retry_after} if retry_after else None
            return fault.code or 500, {"detail": f"injected status {fault.code}"}, headers
        if handler.headers.get("Authorization") != f"Bearer {self.personal_api_key}":
            detail = "Personal API key found in request Authorization header is invalid."
            return 401, {"type": "authentication_error", "detail": detail}, None
        if project_id != str(self.project_id):
            return 404, {"type": "invalid_request", "detail": "Not found."}, None
        with self._lock:
            now = time.monotonic()
            self._served = [t for t in self._served if now - t < 3600]
            if self.queries_per_hour is not None and len(self._served) >= self.queries_per_hour:
                oldest = self._served[0] if self._served else now
                wait = int(3600 - (now - oldest)) + 1
                detail = f"Request was throttled. Expected available in {wait} seconds."
                throttled = {"type": "throttled_error", "detail": detail}
                return 429, throttled, {"Retry-After": str(wait)}
            self._served.append(now)
        query = _query_text(body)
        for pattern, columns, table in (
            (_PERSONS_QUERY, ["distinct_id", "person.properties"], "person_distinct_ids"),
            (_GROUPS_QUERY, ["key", "properties"], "groups"),
        ):
            wanted = pattern.match(query)
            if wanted is not None and persons is not None:
                ids = [re.sub(r"\\(.)", r"\1", text) for text in _LITERAL.findall(wanted[1])]
                rows = persons(table, ids)[: min(int(wanted[2]), MAX_ROWS)]
                return 200, {"results": rows, "columns": columns, "hasMore": False}, None
        match = _COUNT_QUERY.match(query)
        if match is None:
            return 400, {"type": "validation_error", "detail": "Unsupported query: " + query}, None
        unit, key_name, distinct, count_name, source, unset, low, high, limit = match.groups()
        chosen = [
            event
            for event in events()
            if unset is None or (event.get("properties") or {}).get(unset) is None
        ]
        rows = _counts(chosen, unit.lower() == "tostartofday", bool(distinct), source, low, high)
        cap = min(int(limit), MAX_ROWS)
        return (
            200,
            {
                "results": rows[:cap],
                "columns": [key_name, count_name],
                "types": [[key_name, "DateTime('UTC')"], [count_name, "UInt64"]],
                "hasMore": len(rows) > cap,
            },
            None,
        )


def _query_text(body: bytes) -> str:
    try:
        payload = orjson.loads(body)
        query = payload["query"]
        if query.get("kind") == "HogQLQuery" and isinstance(query.get("query"), str):
            return str(query["query"])
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        pass
    return ""


def _counts(
    events: list[dict[str, Any]], by_day: bool, distinct: bool, source: str, low: str, high: str
) -> list[list[Any]]:
    start = datetime.fromisoformat(low).replace(tzinfo=UTC)
    end = datetime.fromisoformat(high).replace(tzinfo=UTC)
    seen: dict[datetime, set[Any]] = defaultdict(set)
    totals: dict[datetime, int] = defaultdict(int)
    for position, event in enumerate(events):
        properties = event.get("properties")
        if not isinstance(properties, dict) or properties.get("analytics_source") != source:
            continue
        when = parse_utc(event.get("timestamp"))
        if when is None or not start <= when < end:
            continue
        bucket = when.replace(minute=0, second=0, microsecond=0)
        if by_day:
            bucket = bucket.replace(hour=0)
        seen[bucket].add(event.get("uuid") or ("no-uuid", position))
        totals[bucket] += 1
    return [
        [
            f"{bucket.date().isoformat()}T{bucket:%H:%M:%S}Z",
            len(seen[bucket]) if distinct else totals[bucket],
        ]
        for bucket in sorted(seen)
    ]
