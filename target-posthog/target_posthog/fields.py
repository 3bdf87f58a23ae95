"""Shared by the mapping modules: reading Amplitude fields and naming PostHog properties."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Amplitude fields without a PostHog equivalent are kept as `$amplitude_<field>`.
RAW_PREFIX = "$amplitude_"


class UnmappableError(Exception):
    """The record cannot become a PostHog event; `reason` says why (goes to the dead-letter)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def object_field(record: dict[str, Any], field: str) -> dict[str, Any]:
    """`record[field]` as an object ({} when absent); `UnmappableError` when it is not one."""
    value = record.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UnmappableError(f"{field} is not an object")
    return value


def first(key: object) -> object:
    """The first of a list of keys (None for an empty list), or the key itself."""
    if isinstance(key, list):
        return key[0] if key else None
    return key


class NameCache:
    """field -> output name, computed once per distinct field (bounded: odd input must not
    grow memory without end). `names` is a plain dict (the fastest lookup); `learn` adds to it."""

    _LIMIT = 10_000

    def __init__(self, name_of: Callable[[str], str]) -> None:
        self.names: dict[str, str] = {}
        self._name_of = name_of

    def learn(self, field: str) -> str:
        name = self.names.get(field)
        if name is None:
            name = self._name_of(field)
            if len(self.names) < self._LIMIT:
                self.names[field] = name
        return name
