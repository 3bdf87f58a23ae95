"""JSON written with every number exactly as received (orjson alone would change them).

orjson refuses to write an integer wider than 64 bits (``Integer exceeds 64-bit range``, whatever
``default`` says), and writes every other number in its own spelling (``1.10`` -> ``1.1``,
``1E+2`` -> ``100.0``, ``12.345678901234567890123`` -> ``12.345678901234567``). tap-amplitude
writes every number as the export spells it (its README, "Numbers"), and target-posthog sends it
so: each reads a number orjson would not write back the same as an :class:`ExactFloat` (a float
that keeps its text), and writes with :func:`dumps` (or an orjson ``default`` from
:func:`default_for`): an ``ExactFloat`` as its text, a wide integer as its digits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

_INT64_MIN, _UINT64_MAX = -(1 << 63), (1 << 64) - 1


class ExactFloat(float):
    """A number whose received text orjson would not write back the same: keeps ``text``."""

    text: str

    def __new__(cls, text: str) -> ExactFloat:
        self = super().__new__(cls, text)
        self.text = text
        return self

    def __repr__(self) -> str:
        return self.text


def default_for(fallback: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """An orjson ``default`` that writes an :class:`ExactFloat` as its text, anything else
    through ``fallback`` (``None``: a ``TypeError``, which orjson raises as its
    ``JSONEncodeError``)."""

    def exact_default(value: Any) -> Any:
        if value.__class__ is ExactFloat:
            return orjson.Fragment(value.text)
        if fallback is None:
            raise TypeError(f"{type(value).__name__} is not JSON serializable")
        return fallback(value)

    return exact_default


def dumps(value: Any, *, default: Callable[[Any], Any] | None = None, option: int = 0) -> bytes:
    """``orjson.dumps``, with exact numbers (``ExactFloat``, integers of any width) as read.
    Raises ``orjson.JSONEncodeError`` for what neither orjson nor ``default`` can write."""
    exact_default = default_for(default)
    try:
        return orjson.dumps(value, default=exact_default, option=option)
    except orjson.JSONEncodeError:
        wide = _with_wide_ints_as_fragments(value)
        if wide is value:
            raise
        return orjson.dumps(wide, default=exact_default, option=option)


def _with_wide_ints_as_fragments(value: Any) -> Any:
    """A copy with ints wider than 64 bits as their digits (the same object when none)."""
    kind = type(value)
    if kind is int:
        return value if _INT64_MIN <= value <= _UINT64_MAX else orjson.Fragment(str(value))
    if kind is dict:
        items = {key: _with_wide_ints_as_fragments(item) for key, item in value.items()}
        return value if all(items[key] is value[key] for key in value) else items
    if kind is list or kind is tuple:
        listed = [_with_wide_ints_as_fragments(item) for item in value]
        return value if all(a is b for a, b in zip(listed, value, strict=True)) else listed
    return value
