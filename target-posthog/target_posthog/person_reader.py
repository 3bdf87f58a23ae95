"""Which properties PostHog persons already hold: for `existing_properties: keep`.

The capture API can neither read a person nor set a property on a condition, so to spare the
values a project had before the migration while keeping the migration's own values newest by
event time across runs, the target reads, once per person (at its first update), the names
of the properties it holds, through PostHog's query API (HogQL on the app host, a personal
API key with Query Read: the verification's `personal_api_key`, `project_id`, `app_host`;
about 120 queries an hour, 50,000 rows a query: shared/reference/counting-apis.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from target_posthog.client import RetryPolicy
from target_posthog.counts import CountingError, PostHogCounts, app_host_for
from target_posthog.profile_state import State
from target_posthog.profile_updates import GROUP, PERSON

__all__ = ["CountingError", "LiveNames", "PostHogPersonReader", "reader_for"]

_logger = logging.getLogger("target-posthog")

IDS_PER_QUERY = 1_000  # distinct_ids per query (a person has few; well under 50,000 rows)


class PostHogPersonReader(PostHogCounts):
    """distinct_ids -> the names of the properties their PostHog persons hold."""

    def held_names(self, distinct_ids: list[str]) -> dict[str, set[str]]:
        """For each distinct_id PostHog knows, its person's property names (one query per
        `IDS_PER_QUERY` ids); ids PostHog does not know are left out. Raises CountingError
        (one line) when PostHog cannot answer."""
        held: dict[str, set[str]] = {}
        for start in range(0, len(distinct_ids), IDS_PER_QUERY):
            chunk = distinct_ids[start : start + IDS_PER_QUERY]
            query = (
                "SELECT distinct_id, person.properties FROM person_distinct_ids "
                f"WHERE distinct_id IN ({', '.join(map(_literal, chunk))}) LIMIT {len(chunk)}"
            )
            for distinct_id, properties in self._results(query):
                held[distinct_id] = set(properties)
        return held

    def held_group_names(self, keys: list[str]) -> dict[str, set[str]]:
        """For each group (its profile key: JSON [type, key]) PostHog knows, the names of
        its properties. HogQL's `groups` table names a group's type only by its index, so a
        key held under several types counts for all of them (that only spares more)."""
        wanted = {key: orjson.loads(key)[1] for key in keys}
        names: dict[str, set[str]] = {}
        group_keys = sorted(set(wanted.values()))
        for start in range(0, len(group_keys), IDS_PER_QUERY):
            chunk = group_keys[start : start + IDS_PER_QUERY]
            query = (
                "SELECT key, properties FROM groups "
                f"WHERE key IN ({', '.join(map(_literal, chunk))}) LIMIT {len(chunk) * 5}"
            )  # at most 5 group types per project
            for group_key, properties in self._results(query):
                names.setdefault(group_key, set()).update(properties)
        return {key: names[group_key] for key, group_key in wanted.items() if group_key in names}

    def _results(self, query: str) -> list[tuple[str, dict[str, Any]]]:
        """The query's rows: (an id or key, the properties as an object)."""
        body = {"query": {"kind": "HogQLQuery", "query": query}}
        answer = self._call("POST", self.url, json=body)
        try:
            return [(str(name), _as_object(held)) for name, held in answer["results"]]
        except (KeyError, TypeError, ValueError):
            raise CountingError(
                f"{self.service} answered without rows of two columns at {self.url}"
            ) from None

    def _limited(self, detail: str, retry_after: float | None, retries: int) -> str:
        return (
            f"{self.service} is rate limiting this key (429: {detail}). HogQL allows about "
            "120 queries an hour per key; existing_properties keep reads each person once"
        )


def reader_for(config: Mapping[str, Any]) -> PostHogPersonReader | None:
    """The reader `existing_properties: keep` uses, when `personal_api_key` and `project_id`
    are set (the verification's settings); None otherwise (keep then only fills gaps)."""
    if config.get("existing_properties") != "keep":
        return None
    if not (config.get("personal_api_key") and config.get("project_id")):
        return None
    return PostHogPersonReader(
        app_host=config.get("app_host") or app_host_for(config["host"]),
        personal_api_key=config["personal_api_key"],
        project_id=str(config["project_id"]),
        timeout=float(config["request_timeout"]),
        retry=RetryPolicy(int(config["max_retries"]), float(config["retry_base_seconds"])),
    )


class LiveNames:
    """keep: the property names each PostHog person held before the migration's first update
    of it (`State.live`), read once per person; after one failure, not asked again this run."""

    def __init__(self, reader: PostHogPersonReader) -> None:
        self._reader = reader
        self.error: str | None = None

    def learn(
        self, states: dict[tuple[str, str], State], owner_of: Callable[[str], str | None]
    ) -> tuple[list[tuple[str, str]], set[tuple[str, str]]]:
        """Fill `live` of the persons and groups among `states` ((kind, key) -> State) that
        have none (persons: not a device tied to a user); ((kind, key) of those filled, of
        those PostHog could not be asked about: their updates wait for the next run, said in
        one log line)."""
        asking = [
            (kind, key)
            for (kind, key), state in states.items()
            if state.live is None and (kind != PERSON or owner_of(key) in (None, key))
        ]
        if not asking:
            return [], set()
        if self.error is None:
            try:
                persons = [key for kind, key in asking if kind == PERSON]
                groups = [key for kind, key in asking if kind != PERSON]
                held = {(PERSON, k): v for k, v in self._reader.held_names(persons).items()}
                held.update(
                    ((GROUP, k), v) for k, v in self._reader.held_group_names(groups).items()
                )
            except CountingError as exc:
                self.error = str(exc)
                _logger.warning(
                    "existing_properties is keep: cannot read what PostHog's persons and "
                    "groups hold (%s); their updates wait for the next run",
                    exc,
                )
        if self.error is not None:
            return [], set(asking)
        for item in asking:
            states[item].live = sorted(held.get(item, ()))
        return asking, set()

    def close(self) -> None:
        self._reader.close()


def _literal(text: str) -> str:
    """A HogQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _as_object(properties: Any) -> dict[str, Any]:
    """A person's properties as the query API gives them (a JSON text or an object)."""
    if isinstance(properties, str):
        properties = orjson.loads(properties) if properties else {}
    if not isinstance(properties, dict):
        raise TypeError("person properties are not an object")
    return properties
