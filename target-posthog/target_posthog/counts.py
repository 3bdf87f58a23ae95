"""What each side holds, per UTC hour: Amplitude's Dashboard REST API and PostHog's query API.

Facts from shared/reference/counting-apis.md (Amplitude: amplitude.com/docs/apis/analytics/
dashboard-rest, "Event segmentation"; PostHog: posthog.com/docs/api/queries):
- Amplitude buckets are in the project's time zone, labelled in local wall time; hourly
  queries cover at most 7 days, daily ones 365; at most 5 concurrent requests and an hourly
  cost budget per project (429 beyond). Queries here go one at a time.
- PostHog's HogQL runs on the private app host (not the ingestion host) with a personal API
  key (Query Read); about 120 queries an hour per key, 50,000 rows a query.
Both clients' requests, retries, wait lines and progress lines: count_requests.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from target_posthog.client import RetryPolicy
from target_posthog.count_requests import CountingError as CountingError  # its users' name
from target_posthog.count_requests import JsonApi, Say, waited
from target_posthog.profile_updates import UPDATE_MARKER

HOUR = dt.timedelta(hours=1)
AMPLITUDE_URLS = {"us": "https://amplitude.com", "eu": "https://analytics.eu.amplitude.com"}
HOURLY, DAILY = "-3600000", "1"
_DAYS_PER_QUERY = {HOURLY: 7, DAILY: 365}
_MAX_ROWS = 50_000
_UTC_ZONES = frozenset(("UTC", "Etc/UTC", "Etc/GMT", "GMT", "Etc/Universal", "Universal", "Zulu"))


def day_text(moment: dt.datetime | dt.date) -> str:
    """YYYY-MM-DD with a 4-digit year also before year 1000 (strftime's %Y writes year 1 as
    "1" on Linux, and Amplitude answers 400 to such a date)."""
    return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"


def app_host_for(host: str) -> str:
    """PostHog's private app host for an ingestion host: us.i.posthog.com -> us.posthog.com.

    Self-hosted PostHog answers both on one URL, so any other host is its own app host.
    """
    parts = urlsplit(host.rstrip("/"))
    name = parts.hostname or ""
    if name.endswith(".i.posthog.com"):
        name = name.removesuffix(".i.posthog.com") + ".posthog.com"
    elif name == "app.posthog.com":
        name = "us.posthog.com"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{name}{port}"


def zone_of(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CountingError(
            f"amplitude_time_zone {name!r} is not a time zone name (e.g. UTC, "
            "America/Los_Angeles): use the one in Amplitude's project settings"
        ) from None


class AmplitudeCounts(JsonApi):
    """Event totals per UTC hour (or UTC day) from Amplitude's event segmentation."""

    service = "Amplitude's Dashboard REST API"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        secret_key: str,
        time_zone: str,
        timeout: float,
        retry: RetryPolicy,
        say: Say | None = None,
    ) -> None:
        super().__init__(timeout, retry, say)
        self.url = base_url.rstrip("/") + "/api/2/events/segmentation"
        self.zone = zone_of(time_zone)
        self._session.auth = (api_key, secret_key)

    def __repr__(self) -> str:  # never the keys
        return f"AmplitudeCounts(url={self.url!r}, zone={self.zone.key!r})"

    def counts(
        self, start: dt.datetime, end: dt.datetime, *, by_day: bool
    ) -> dict[dt.datetime, int]:
        """Events per UTC period start within [start, end) (whole UTC hours or days).

        Daily buckets are used only for days in a UTC project; otherwise hourly buckets
        (7 days a query) are moved to UTC, which is exact for whole-hour offsets.
        """
        interval = self._interval(by_day)
        first, last = self.local_days(start, end)
        if interval == HOURLY:
            self._check_whole_hours(first, last)  # before any query spends the budget
        found: dict[dt.datetime, int] = {}
        for low, high in _date_chunks(first, last, _DAYS_PER_QUERY[interval]):
            labels, values = self._segmentation(interval, low, high)
            for moment, value in self._to_utc(labels, values, interval):
                if start <= moment < end and value:
                    found[moment] = found.get(moment, 0) + value
        return found

    def local_days(self, start: dt.datetime, end: dt.datetime) -> tuple[dt.date, dt.date]:
        """The first and last day in the project's zone that [start, end) touches. A local
        day before year 1 (year 1 west of UTC) is year 1's first: its buckets are before
        `start`-`end` anyway, and Amplitude has no earlier day to ask."""
        return _local_day(start, self.zone), _local_day(end - HOUR, self.zone)

    def _interval(self, by_day: bool) -> str:
        return DAILY if by_day and self.zone.key in _UTC_ZONES else HOURLY

    def days_per_query(self, *, by_day: bool) -> int:
        """7 (hourly buckets) or 365 (daily ones, a UTC project's days): counting-apis.md."""
        return _DAYS_PER_QUERY[self._interval(by_day)]

    def queries(self, start: dt.datetime, end: dt.datetime, *, by_day: bool) -> int:
        """How many queries `counts` sends for [start, end): one per `days_per_query` local
        days."""
        first, last = self.local_days(start, end)
        return -(-((last - first).days + 1) // self.days_per_query(by_day=by_day))

    def _segmentation(
        self, interval: str, low: dt.date, high: dt.date
    ) -> tuple[list[str], list[int]]:
        params = {
            "e": orjson.dumps({"event_type": "_all"}).decode(),
            "m": "totals",
            "i": interval,
            "start": day_text(low).replace("-", ""),
            "end": day_text(high).replace("-", ""),
        }
        answer = self._call("GET", self.url, params=params)
        try:
            labels = [str(label) for label in answer["data"]["xValues"]]
            values = [int(value) for value in answer["data"]["series"][0]]
        except (KeyError, IndexError, TypeError, ValueError):
            raise CountingError(
                f"{self.service} answered without data.xValues and data.series at {self.url}"
            ) from None
        if len(labels) != len(values):
            raise CountingError(f"{self.service} answered {len(labels)} buckets but "
                                f"{len(values)} values at {self.url}")  # fmt: skip
        return labels, values

    def _to_utc(
        self, labels: list[str], values: list[int], interval: str
    ) -> Iterator[tuple[dt.datetime, int]]:
        previous: dt.datetime | None = None
        for label, value in zip(labels, values, strict=True):
            naive = dt.datetime.fromisoformat(label.replace(" ", "T"))
            if interval == DAILY:
                yield naive.replace(tzinfo=dt.UTC), value
                continue
            try:
                moment = naive.replace(tzinfo=self.zone).astimezone(dt.UTC)
                later = naive.replace(tzinfo=self.zone, fold=1).astimezone(dt.UTC)
            except OverflowError:  # a local hour before UTC's year 1 (a zone east of UTC) or
                continue  # after its 9999 (west): outside any report's range
            if previous is not None and moment <= previous < later:
                moment = later  # the second of two hours with one label (DST ends)
            offset = naive.replace(tzinfo=self.zone, fold=moment == later).utcoffset()
            if offset is not None and offset % HOUR:
                raise CountingError(self._not_whole_hours(offset, naive))
            previous = moment
            yield moment, value

    def _check_whole_hours(self, first: dt.date, last: dt.date) -> None:
        """CountingError if the zone is off UTC by a part of an hour on a day of the range
        (Asia/Kolkata, UTC+05:30): told before a query, on each day's local noon."""
        for days in range((last - first).days + 1):  # never a day past `last` (9999-12-31)
            day = first + dt.timedelta(days=days)
            noon = dt.datetime(day.year, day.month, day.day, 12, tzinfo=self.zone)
            offset = noon.utcoffset()
            if offset is not None and offset % HOUR:
                raise CountingError(self._not_whole_hours(offset, noon))

    def _not_whole_hours(self, offset: dt.timedelta, local: dt.datetime) -> str:
        return (
            f"the Amplitude project's time zone {self.zone.key} is UTC{offset_text(offset)} on "
            f"{day_text(local)}: its hourly buckets do not line up with UTC hours, so they "
            "cannot be compared hour by hour with the migration"
        )

    def _refusal(self, status: int, detail: str, url: str) -> str:
        if status in (401, 403):
            return (
                f"Amplitude refused the API key or secret key ({status}) at {url}: use the "
                "project's keys (Settings -> Projects), and amplitude_data_region eu for EU "
                "projects"
            )
        return f"{self.service} answered {status} at {url}: {detail}"

    def _limited(self, detail: str, retry_after: float | None, retries: int) -> str:
        return (
            f"{self.service} is rate limiting this project (429: {detail}"
            f"{waited(retries, retry_after)}). Its limits "
            "are per project (5 concurrent requests, an hourly cost budget): run the "
            "verification again in an hour"
        )


class PostHogCounts(JsonApi):
    """Events with `analytics_source = 'amplitude'` per UTC hour, by HogQL."""

    service = "PostHog's query API"

    def __init__(
        self,
        *,
        app_host: str,
        personal_api_key: str,
        project_id: str,
        timeout: float,
        retry: RetryPolicy,
        say: Say | None = None,
    ) -> None:
        super().__init__(timeout, retry, say)
        self.app_host = app_host.rstrip("/")
        self.project_id = project_id
        self.url = f"{self.app_host}/api/projects/{project_id}/query/"
        self._session.headers["Authorization"] = f"Bearer {personal_api_key}"

    def __repr__(self) -> str:  # never the key
        return f"PostHogCounts(url={self.url!r})"

    def counts(self, start: dt.datetime, end: dt.datetime) -> dict[dt.datetime, int]:
        """Distinct event uuids per UTC hour within [start, end): few, wide queries.

        The person and group updates the target sends after a run (profiles.py, marked with
        `UPDATE_MARKER`) are not events of the export: they are left out.
        """
        found: dict[dt.datetime, int] = {}
        low = start
        while low < end:
            high = end if end - low <= _MAX_ROWS * HOUR else low + _MAX_ROWS * HOUR
            found.update(self._hours(low, high))
            low = high
        return found

    @staticmethod
    def queries(start: dt.datetime, end: dt.datetime) -> int:
        """How many queries `counts` sends for [start, end): one per 50,000 hours (the rows
        one query may answer, counting-apis.md), about 5.7 years."""
        return -(-(end - start) // (_MAX_ROWS * HOUR))

    def total(self, low: dt.datetime, high: dt.datetime) -> int:
        """Distinct event uuids within [low, high), however long: one query while the hours
        holding events fit in one answer, else hour by hour as `counts`."""
        hours = self._hours(low, high)
        if len(hours) >= _MAX_ROWS:
            hours = self.counts(low, high)
        return sum(hours.values())

    def _hours(self, low: dt.datetime, high: dt.datetime) -> dict[dt.datetime, int]:
        query = (
            "SELECT toStartOfHour(toTimeZone(timestamp, 'UTC')) AS hour, "
            "count(DISTINCT uuid) AS events FROM events "
            "WHERE properties.analytics_source = 'amplitude' "
            f"AND isNull(properties.{UPDATE_MARKER}) "
            f"AND timestamp >= toDateTime('{day_text(low)} {low:%H:%M:%S}', 'UTC') "
            f"AND timestamp < toDateTime('{day_text(high)} {high:%H:%M:%S}', 'UTC') "
            f"GROUP BY hour ORDER BY hour LIMIT {_MAX_ROWS}"
        )
        body = {"query": {"kind": "HogQLQuery", "query": query}}
        answer = self._call("POST", self.url, json=body)
        try:
            rows = answer["results"]
            return {_utc(str(row[0])): int(row[1]) for row in rows}
        except (KeyError, IndexError, TypeError, ValueError):
            raise CountingError(f"{self.service} answered without results at {self.url}") from None

    def _refusal(self, status: int, detail: str, url: str) -> str:
        if status in (401, 403):
            return (
                f"PostHog refused the personal API key ({status}) at {self.app_host}: set "
                "personal_api_key to a personal API key (phx_...) with the Query Read "
                "permission (the project API key cannot query)"
            )
        if status == 404:
            return (
                f"PostHog has no project {self.project_id} that this key can read at "
                f"{self.app_host} (404): check project_id (Project settings) and app_host"
            )
        return f"{self.service} answered {status} at {url}: {detail}"

    def _limited(self, detail: str, retry_after: float | None, retries: int) -> str:
        return (
            f"{self.service} is rate limiting this key (429: {detail}"
            f"{waited(retries, retry_after)}). HogQL allows "
            "about 120 queries an hour per key: run the verification again later"
        )


def _utc(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text.replace(" ", "T"))
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def offset_text(offset: dt.timedelta) -> str:
    """A UTC offset as +HH:MM or -HH:MM."""
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def moved(moment: dt.datetime, delta: dt.timedelta) -> dt.datetime:
    """`moment + delta`, or the earliest or latest time there is (year 1, 9999) where that
    sum would leave them (OverflowError): for windows around a report's far ends."""
    try:
        return moment + delta
    except OverflowError:
        if delta < dt.timedelta(0):
            return dt.datetime.min.replace(tzinfo=moment.tzinfo)
        return dt.datetime.max.replace(tzinfo=moment.tzinfo)


def _local_day(moment: dt.datetime, zone: ZoneInfo) -> dt.date:
    try:
        return moment.astimezone(zone).date()
    except OverflowError:  # before year 1 there (a zone west of UTC); the range's ends are
        return dt.date.min  # before LAST_END, so never past 9999 in a zone east of it


def _date_chunks(first: dt.date, last: dt.date, days: int) -> Iterator[tuple[dt.date, dt.date]]:
    """[first, last] in pieces of at most `days` days; never a day past `last` (9999-12-31
    has no next day)."""
    low = first
    while low <= last:
        high = low + dt.timedelta(days=min(days - 1, (last - low).days))
        yield low, high
        if high >= last:
            return
        low = high + dt.timedelta(days=1)
