"""Numbers read and written exactly as received (orjson alone would change them).

orjson reads an integer wider than 64 bits as a float (``123456789012345678901234567890`` ->
``1.2345678901234568e+29``) and refuses to write one (``Integer exceeds 64-bit range``, whatever
``default`` says), and writes every other number in its own spelling (``1.10`` -> ``1.1``,
``1E+2`` -> ``100.0``, ``12.345678901234567890123`` -> ``12.345678901234567``). tap-amplitude
sends every number as the export spells it (its README, "Numbers"), so:

- `loads` reads with msgspec, whose integers are exact at any width, and gives each other number
  by the rule tap-amplitude's exactjson uses: a plain ``float`` when orjson writes it back in the
  same text, else an :class:`ExactFloat` (a float that keeps its text), and a number beyond a
  double's range (``1e400``, which no JSON reader downstream holds: PostHog would refuse the
  whole request) the string of its exact text.
- `dumps` (and `default`, for the hot path's own ``orjson.dumps``) writes an ``ExactFloat`` as
  its text and a wide integer as its digits (an ``orjson.Fragment``): the bytes received.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

import msgspec
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


def number(text: str) -> Any:
    """The value of one non-integer JSON number literal (module docstring)."""
    value = float(text)
    if value == 0.0 and text.lstrip("-").split("e")[0].split("E")[0].strip("0.") != "":
        return text  # not zero, but a double would make it 0
    if value == math.inf or value == -math.inf:
        return text
    if "e" in text or "E" in text or repr(value) != text:
        return ExactFloat(text)
    return value


def integer(text: str) -> Any:
    """The value of one JSON integer literal: an ``int``, but ``-0`` (which no ``int`` holds)
    an ``ExactFloat`` that writes back as ``-0``."""
    return ExactFloat(text) if text == "-0" else int(text)


_DECODER = msgspec.json.Decoder(float_hook=number)
# An integer -0 (after `:`, `,` or `[`); a match inside a string only costs the slower reading.
_NEGATIVE_ZERO = re.compile(rb"[:,\[]\s*-0(?![0-9.eE])")


def loads(line: bytes) -> Any:
    """One JSON value, numbers exact. Raises ``ValueError`` (msgspec's DecodeError, or
    UnicodeDecodeError) if it is not JSON or is nested too deep to read."""
    try:
        value = _DECODER.decode(line)
        if _NEGATIVE_ZERO.search(line) is None:
            return value
        # msgspec reads the integer -0 as 0; the standard reader lets `integer` keep it.
        return json.loads(line, parse_float=number, parse_int=integer)
    except RecursionError:
        raise ValueError("nested too deep to read") from None


def default(value: Any) -> Any:
    """orjson's ``default``: an ``ExactFloat`` as its text; anything else unusual (Decimal,
    datetime from other taps' paths) as text."""
    if value.__class__ is ExactFloat:
        return orjson.Fragment(value.text)
    return str(value)


def _with_exact(fallback: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    if fallback is str:
        return default

    def exact_default(value: Any) -> Any:
        if value.__class__ is ExactFloat:
            return orjson.Fragment(value.text)
        if fallback is None:
            raise TypeError(f"{type(value).__name__} is not JSON serializable")
        return fallback(value)

    return exact_default


def dumps(value: Any, *, default: Callable[[Any], Any] | None = None, option: int = 0) -> bytes:
    """``orjson.dumps``, with every number written as received (see the module docstring)."""
    exact_default = _with_exact(default)
    try:
        return orjson.dumps(value, default=exact_default, option=option)
    except orjson.JSONEncodeError:
        exact = _wide_ints_as_fragments(value)
        if exact is value:
            raise
        return orjson.dumps(exact, default=exact_default, option=option)


def _wide_ints_as_fragments(value: Any) -> Any:
    """A copy with wide ints as fragments (the very same object when it holds none)."""
    if type(value) is int:
        return value if _INT64_MIN <= value <= _UINT64_MAX else orjson.Fragment(str(value))
    if type(value) is dict:
        copied = {key: _wide_ints_as_fragments(item) for key, item in value.items()}
        return value if all(copied[key] is value[key] for key in value) else copied
    if type(value) in (list, tuple):
        items = [_wide_ints_as_fragments(item) for item in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value
