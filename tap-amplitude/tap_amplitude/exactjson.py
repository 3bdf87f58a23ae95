"""orjson encoding that keeps integers of any width exactly.

orjson refuses integers outside 64 bits (``Integer exceeds 64-bit range``, ignoring ``default``);
Amplitude exports can hold wider ones (``"order_id": 123456789012345678901234567890``), which the
tap reads exactly (see ``lines.py``). Such a record is encoded again with each wide integer as an
``orjson.Fragment`` of its decimal digits: the same bytes orjson would write, had it the range.
Only records that hold one pay for the second pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

_INT64_MIN, _UINT64_MAX = -(1 << 63), (1 << 64) - 1


def dumps(value: Any, *, default: Callable[[Any], Any] | None = None, option: int = 0) -> bytes:
    """``orjson.dumps``, with wider-than-64-bit integers written exactly."""
    try:
        return orjson.dumps(value, default=default, option=option)
    except orjson.JSONEncodeError:
        wide = _with_wide_ints_as_fragments(value)
        if wide is value:
            raise
        return orjson.dumps(wide, default=default, option=option)


def _with_wide_ints_as_fragments(value: Any) -> Any:
    """A copy with wide ints replaced (the same object when there is none)."""
    kind = type(value)
    if kind is int:
        return orjson.Fragment(str(value)) if not _INT64_MIN <= value <= _UINT64_MAX else value
    if kind is dict:
        items = {k: _with_wide_ints_as_fragments(v) for k, v in value.items()}
        return value if all(items[k] is value[k] for k in value) else items
    if kind is list or kind is tuple:
        items_list = [_with_wide_ints_as_fragments(v) for v in value]
        return value if all(a is b for a, b in zip(items_list, value, strict=True)) else items_list
    return value
