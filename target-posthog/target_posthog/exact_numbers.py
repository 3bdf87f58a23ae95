"""Numbers read exactly as received (orjson alone would change them); written back exactly by
singer_plugin_common.exact_json.

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
- `exact_json.dumps` (and `default`, for the hot path's own ``orjson.dumps``) writes an
  ``ExactFloat`` as its text and a wide integer as its digits (an ``orjson.Fragment``): the
  bytes received.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import msgspec
from singer_plugin_common.exact_json import ExactFloat, default_for


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


# orjson's ``default`` for the hot path's own ``orjson.dumps``: an ``ExactFloat`` as its text;
# anything else unusual (Decimal, datetime from other taps' paths) as text.
default = default_for(str)
