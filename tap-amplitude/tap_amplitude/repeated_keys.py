"""Keys given twice in one JSON object (``{"a":1,"a":2}``): found on every line, kept aside.

Every JSON parser keeps the last value of a repeated key; the earlier ones would be lost
silently. Finding them exactly (exactjson.duplicate_keys: the standard library's parser with
a hook per object) costs several times the fast parse, so a line is first judged by counting:
it spells one ``":`` per key, and a record read from it holds one key per distinct key.

The count is exact only when three things hold, so a line where one might not goes straight
to the exact check:

- the record holds only what the line spelled: the tap adds keys to a record it repaired
  (``repairs``) or gave a uuid (``uuid`` and ``uuid_derived``; ``uuid_original``), and moves
  export fields named like its own into ``additional_properties.reserved_names``, and each
  added key would hide one repeated key (issue 11: a line without a uuid and a key given twice
  passed for clean);
- no key is followed by whitespace before its colon (``"a" : 1`` spells no ``":``);
- no ``"`` or ``:`` inside a string is written as a ``\\u`` escape (``"\\u0022:"`` holds a
  ``":`` that the line does not spell but the record, written again, does).

Otherwise a ``":`` inside a string is spelled ``\\":`` both in the line and in the record
written again, so the line spells exactly as many ``":`` as the record written again holds
plus one per earlier value of a repeated key.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from singer_plugin_common import exact_json

from tap_amplitude import texts
from tap_amplitude.exactjson import (
    DUPLICATES_KEY,
    EXTRA_FIELD,
    REPAIR_DUPLICATE_KEYS,
    REPAIRS_FIELD,
    duplicate_keys,
)
from tap_amplitude.keys import DERIVED_FIELD, ORIGINAL_FIELD

logger = logging.getLogger("tap-amplitude")

_KEY_END = b'":'
_BOM = b"\xef\xbb\xbf"
# A key with whitespace before its colon, or a `"` or `:` escaped as \u0022 or \u003a.
_UNCOUNTABLE = re.compile(rb'"[ \t\r]+:|\\u00(?:22|3[aA])')


def may_repeat_keys(record: dict[str, Any], objects: tuple[str, ...], line: bytes) -> bool:
    """False only when ``line`` surely gives no key twice (``record`` was read from it;
    ``objects``: its top-level fields holding objects). Cheap first: counted at the first two
    levels; objects deeper down (group_properties) or a ``":`` inside a string settle it by
    counting the record written again."""
    if REPAIRS_FIELD in record or DERIVED_FIELD in record or ORIGINAL_FIELD in record:
        return True  # keys the tap added (module docstring)
    # Cheap first (this runs for every line): a raw tab or CR can only be whitespace between
    # tokens, a backslash only an escape, and a single byte is found at memchr's speed.
    if (
        b" :" in line
        or ((b"\t" in line or b"\r" in line) and (b"\t:" in line or b"\r:" in line))
        or (b"\\" in line and b"\\u00" in line)
    ) and _UNCOUNTABLE.search(line) is not None:
        return True
    spelled = line.count(_KEY_END)
    return spelled != len(record) + sum(map(len, map(record.__getitem__, objects))) and (
        spelled != exact_json.dumps(record).count(_KEY_END)
    )


def keep_repeated_keys(record: dict[str, Any], line: bytes) -> dict[str, list[Any]]:
    """Earlier values of the keys ``line`` repeats -> ``additional_properties.duplicate_keys``
    (by JSON Pointer), noted in ``repairs``; returns them ({} when the line repeats none). Their
    lone surrogates and NULs become U+FFFD, noted too, as in the record itself (texts.py)."""
    earlier = duplicate_keys(line.removeprefix(_BOM))  # the repair lines.py notes on its own
    if not earlier:
        return earlier
    extra = record.get(EXTRA_FIELD)
    if extra.__class__ is not dict:
        extra = record[EXTRA_FIELD] = {}
    repairs = record.get(REPAIRS_FIELD)
    if repairs.__class__ is not list:
        repairs = record[REPAIRS_FIELD] = []
    found = texts.repairs_for(earlier)  # text no writer or target takes ("x\ud800", NUL)
    if found:
        earlier = texts.cleaned(earlier)
        repairs.extend(repair for repair in found if repair not in repairs)
    extra[DUPLICATES_KEY] = earlier
    repairs.append(REPAIR_DUPLICATE_KEYS)
    return earlier
