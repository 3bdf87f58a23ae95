"""One line of an export member -> one record: fast when clean, tolerant where meaning is clear.

Nearly every line is clean JSON and goes through one fast, exact parse (exactjson.py: integers of
any width, every number as the export spells it, repeated keys and export fields named like the
tap's own kept aside, each noted as a repair). The rest:

- A byte-order mark at the line's start is dropped (some tools that re-save exports add one).
- Bytes that are not UTF-8 are replaced by U+FFFD (a string cut mid-character by a producer).
- A control character written raw inside a string (a tab, NUL, ESC: JSON wants ``\\t``,
  ``\\u0000``) is read as itself, and written escaped.
- A lone UTF-16 surrogate escape (``"\\ud83d"`` with no low half: an emoji cut in two, which
  Amplitude's own writer lets through and Python's ``json`` reads) becomes U+FFFD.
- NUL in a string or key (``"\\u0000"``, or raw), which PostgreSQL cannot store, becomes U+FFFD
  (texts.py).

Each repair is named in the record's ``repairs`` field (a list of the ``REPAIR_*`` texts below),
so the change is visible wherever the record lands. What still is not one JSON object (``null``,
``[]``, half a line, two objects on one line, NUL bytes, a lone byte-order mark, garbage) or
nests arrays and objects deeper than ``exactjson.MAX_DEPTH`` (200) levels, which no Singer
message writer here takes (orjson stops at 254), raises :class:`UnreadableLineError`; the
caller sets the line aside byte for byte (see ``setaside.py``), because reading it again cannot
make it whole.

Lines are what lies between ``\n`` bytes; the newline that ends a file is not a line. A line of
JSON whitespace only (nothing, spaces, tabs, ``\r``: what a blank line of a CRLF file leaves) holds
no record and nothing that could be one: :func:`is_blank` says so, and the caller counts it
instead of setting it aside. A ``\r`` ending a record's line (CRLF line endings) is JSON
whitespace too and changes nothing.

A repair must not make two identities one: when a repair changes ``user_id``, ``device_id``,
``$insert_id`` or a group type or name in ``groups`` (``"u\\ud800"`` and ``"u\\ud801"`` both read
``"u\ufffd"``), the repaired text is followed by ``#repaired-`` and 12 hex digits of the SHA-256
of the value as exported (its decoded code units; invalid UTF-8 bytes as themselves), so two
different exported ids stay two PostHog persons (or groups), the same exported id always gets
the same form, and the text stays readable.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from tap_amplitude import exactjson, texts

REPAIRS_FIELD = "repairs"
REPAIR_BOM = "byte-order mark removed"
REPAIR_UTF8 = "invalid UTF-8 bytes replaced by U+FFFD"
REPAIR_SURROGATE = texts.REPAIR_SURROGATE
REPAIR_NUL = texts.REPAIR_NUL
REPAIR_CONTROL = (
    "raw control characters inside strings (tab, NUL, ...) read as themselves (JSON wants them "
    "escaped; the tap writes them so)"
)
REPAIR_IDENTITY = "repaired id kept distinct (#repaired- and a hash of the exported value)"
# The fields that name a person, a device or an event to PostHog: a repair must keep them apart.
IDENTITY_FIELDS = ("user_id", "device_id", "$insert_id", "groups")
IDENTITY_MARK = "#repaired-"
_JSON_WHITESPACE = b" \t\r"
_MAX_DEPTH = exactjson.MAX_DEPTH
TOO_DEEP = (
    f"nested too deep: more than {exactjson.MAX_DEPTH} levels of arrays and objects (a Singer "
    "message is written with at most 254); not read further"
)

_BOM = b"\xef\xbb\xbf"
# The integer -0 (or a string ending so: the slower path reads those the same). About a
# microsecond a line: dates put "-0" in nearly every line, never before a delimiter.
_NEGATIVE_ZERO = re.compile(rb"-0[,}\] \t\r\n]")
_JSON_TYPES = {list: "a JSON array", str: "a JSON string", bool: "JSON true or false"}


class UnreadableLineError(ValueError):
    """The line is not one JSON object; ``reason`` says why, without the line's content."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_blank(line: bytes) -> bool:
    """True for a line of JSON whitespace only (empty, spaces, tabs, ``\\r``): no record in it."""
    return not line.strip(_JSON_WHITESPACE)


def parse_line(line: bytes) -> dict[str, Any]:
    """The record a line holds, repaired where the meaning is clear.

    Raises:
        UnreadableLineError: the line is not (even after those repairs) one JSON object, or is
            nested too deep to be written as a Singer message.
    """
    # exactjson.too_deep's own first test, inline: this runs for every line of the export.
    if line.count(b"{") + line.count(b"[") > _MAX_DEPTH and exactjson.too_deep(line):
        raise UnreadableLineError(TOO_DEEP)
    if b"\\u0000" in line:  # NUL, valid JSON that PostgreSQL refuses: repaired (texts.py)
        return _parse_tolerant(line)
    if _NEGATIVE_ZERO.search(line) is not None:  # msgspec reads -0 as 0: the sign is lost
        return _parse_tolerant(line)
    try:
        value = exactjson.loads(line)
    except exactjson.DecodeError:
        return _parse_tolerant(line)
    if type(value) is not dict:
        raise UnreadableLineError(_not_an_object(value))
    repairs: list[str] = []
    exactjson.settle(value, line, repairs)
    if repairs:
        value[REPAIRS_FIELD] = repairs
    return value


def _parse_tolerant(line: bytes) -> dict[str, Any]:
    """The slow path: standard-library JSON (exact integers), after and with the repairs."""
    repairs: list[str] = []
    if line.startswith(_BOM):
        line = line[len(_BOM) :]
        repairs.append(REPAIR_BOM)
        if is_blank(line):
            raise UnreadableLineError("no JSON: only a byte-order mark")
    if not line.strip(b"\x00" + _JSON_WHITESPACE):
        raise UnreadableLineError("no JSON: only NUL bytes, a zero-filled stretch of the file")
    try:
        text = line.decode()
    except UnicodeDecodeError:
        text = line.decode(errors="replace")
        repairs.append(REPAIR_UTF8)
    value = _loads(text, repairs)
    if type(value) is not dict:
        raise UnreadableLineError(_not_an_object(value))
    exactjson.settle(value, text, repairs)
    # The identity fields as read, lone surrogates still in (only a \\u escape puts one there).
    ids = {name: value.get(name) for name in IDENTITY_FIELDS}
    if "\\u" in text or "\x00" in text:  # a lone surrogate or NUL (texts.py) is possible
        found = texts.repairs_for(value)
        if found:
            value = texts.cleaned(value)
            repairs.extend(found)
    if repairs:
        exported = (
            _loads(line.decode(errors="surrogateescape"), []) if REPAIR_UTF8 in repairs else ids
        )
        if _keep_ids_distinct(value, exported):
            repairs.append(REPAIR_IDENTITY)
        value[REPAIRS_FIELD] = repairs
    return value


def _loads(text: str, repairs: list[str]) -> Any:
    """Standard-library JSON, numbers as exactjson reads them (no NaN), or why not. Raw control
    characters inside strings are read as themselves, noted in ``repairs``."""
    try:
        try:
            return exactjson.loads_text(text)
        except json.JSONDecodeError as error:
            if not error.msg.startswith("Invalid control character"):
                raise
        value = exactjson.loads_text(text, strict=False)
        repairs.append(REPAIR_CONTROL)
        return value
    except json.JSONDecodeError as error:
        if error.msg == "Extra data":
            msg = f"not one JSON object: more JSON from column {error.colno} (a line break lost?)"
            raise UnreadableLineError(msg) from None
        raise UnreadableLineError(f"not JSON: {error.msg} (column {error.colno})") from None
    except (ValueError, RecursionError) as error:
        raise UnreadableLineError(f"not JSON: {error}") from None


def _keep_ids_distinct(value: dict[str, Any], exported: dict[str, Any]) -> bool:
    """Give each id the repairs changed its distinct form (module docstring), in place; True
    when there was one. ``exported`` holds the fields as read before repairs (lone surrogates,
    and invalid UTF-8 bytes as surrogateescape code points), in the same order."""
    changed = False
    for name in IDENTITY_FIELDS:
        if name in value and name in exported:
            value[name], kept_apart = _distinct(value[name], exported[name])
            changed = changed or kept_apart
    return changed


def _distinct(repaired: Any, original: Any) -> tuple[Any, bool]:
    """``repaired`` with each string a repair changed given its distinct form; strings in
    lists and objects (``groups``: keys and values) too, paired with ``original`` by place."""
    if type(repaired) is str:
        if type(original) is not str or repaired == original:
            return repaired, False
        return f"{repaired}{IDENTITY_MARK}{_exported_digest(original)}", True
    if type(repaired) is list and type(original) is list and len(repaired) == len(original):
        pairs = [_distinct(r, o) for r, o in zip(repaired, original, strict=True)]
        return [item for item, _ in pairs], any(kept for _, kept in pairs)
    if type(repaired) is dict and type(original) is dict and len(repaired) == len(original):
        result, changed = {}, False
        for (key, item), (key_was, item_was) in zip(
            repaired.items(), original.items(), strict=True
        ):
            new_key, key_kept = _distinct(key, key_was)
            result[new_key], item_kept = _distinct(item, item_was)
            changed = changed or key_kept or item_kept
        return result, changed
    return repaired, False


def _exported_digest(original: str) -> str:
    """12 hex digits of SHA-256 of an id as exported: bytes that were not UTF-8 as themselves
    (surrogateescape), lone surrogate escapes as their code units (surrogatepass)."""
    try:
        data = original.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        data = original.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:12]


def _not_an_object(value: object) -> str:
    kind = "JSON null" if value is None else _JSON_TYPES.get(type(value), "a JSON number")
    return f"not an object: {kind}"
