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
from target_posthog.profile_updates import PERSON

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
            answer = self._call(
                "POST", self.url, json={"query": {"kind": "HogQLQuery", "query": query}}
            )
            try:
                for distinct_id, properties in answer["results"]:
                    held[str(distinct_id)] = set(_as_object(properties))
            except (KeyError, TypeError, ValueError):
                raise CountingError(
                    f"{self.service} answered without results at {self.url}"
                ) from None
        return held

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
    ) -> tuple[list[str], set[str]]:
        """Fill `live` of the persons among `states` ((kind, key) -> State) that have none
        and are no device tied to a user; (those filled, those PostHog could not be asked
        about: their updates wait for the next run, said in one log line)."""
        asking = [
            key
            for (kind, key), state in states.items()
            if kind == PERSON and state.live is None and owner_of(key) in (None, key)
        ]
        if not asking:
            return [], set()
        if self.error is None:
            try:
                held = self._reader.held_names(asking)
            except CountingError as exc:
                self.error = str(exc)
                _logger.warning(
                    "existing_properties is keep: cannot read what PostHog's persons hold "
                    "(%s); their updates wait for the next run",
                    exc,
                )
        if self.error is not None:
            return [], set(asking)
        for key in asking:
            states[(PERSON, key)].live = sorted(held.get(key, ()))
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
