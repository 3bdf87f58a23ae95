"""Singer input lines the fast reader cannot take as they are: mended where the meaning is
clear, else set aside byte for byte. Any record a Singer tap can write reaches PostHog or is
kept, and none stops the run.

- Python's ``json.dumps``, which most Python taps write with, writes a string holding a lone
  UTF-16 surrogate (an emoji cut in two) as ``"\\ud800"``, and a NaN or infinite float as bare
  ``NaN``, ``Infinity``, ``-Infinity``; none of them is RFC 8259 JSON, and msgspec refuses the
  line. Such a line is read by the standard library instead: each lone surrogate becomes U+FFFD,
  each NaN or infinity the string of its text (``"NaN"``: PostHog takes no such number, and
  tap-amplitude treats ``1e400`` the same way), an integer of more than 4,300 digits (which
  msgspec and Python's ``int`` refuse) the string of its digits, as tap-amplitude does, and
  bytes that are not UTF-8 become U+FFFD; a byte-order mark before the message is dropped. The
  record's ``repairs`` list (tap-amplitude's field; it reaches PostHog as
  ``$amplitude_repairs``) names each repair, the first of each kind is logged with its input
  line, and the run's summary counts them.
- A repair must not make two ids one (``"u\\ud800"`` and ``"u\\ud801"`` would both read
  ``"u\\ufffd"``): a record whose ``uuid``, ``user_id``, ``device_id``, ``$insert_id`` or
  ``groups`` a repair would change is set aside instead, as is one whose own ``repairs`` field
  is not a list.
- A RECORD whose ``record`` is no JSON object, or that names no stream (singer-sdk would stop
  the run with a traceback), is set aside.
- A record nested deeper than :data:`MAX_DEPTH` cannot be written into a PostHog payload (orjson
  writes at most 254 levels; a message line is one level deeper than its record) and is set
  aside.

Set aside means: the line's exact bytes (without its newline) in the unreadable-lines files
beside the dead letters (setaside.py), with the stream and the reason, one log line naming the
input line, and counted in the summary. A line that is no RECORD (a SCHEMA or STATE) or is not
JSON even so (a line cut off as the tap died) still stops the run with one line, once what came
before is delivered.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections import Counter
from itertools import accumulate
from typing import Any

from target_posthog import exact_numbers
from target_posthog.setaside import SetAsideLines

logger = logging.getLogger("target-posthog")

MAX_DEPTH = 254  # orjson's limit for writing, and so for a payload
REPAIRS_FIELD = "repairs"
REPAIR_SURROGATE = "lone UTF-16 surrogate escape replaced by U+FFFD"  # tap-amplitude's text
REPAIR_UTF8 = "invalid UTF-8 bytes replaced by U+FFFD"
REPAIR_BOM = "byte-order mark removed"  # tap-amplitude's text
_BOM = b"\xef\xbb\xbf"
REPAIR_CONSTANT = "NaN or Infinity (no JSON number) kept as a string of its text"
REPAIR_WIDE = (  # tap-amplitude's text
    "integer of more than 4300 digits kept as a string of its exact text (Python's JSON "
    "readers, singer-sdk targets' included, refuse wider integers)"
)
MAX_INT_DIGITS = 4300  # Python's limit for int <-> str (sys.get_int_max_str_digits), msgspec's too
IDENTITY_FIELDS = ("uuid", "user_id", "device_id", "$insert_id", "groups")
SOURCE = "target-posthog input"

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"{}[]")))
_STEP = {ord("{"): 1, ord("["): 1, ord("}"): -1, ord("]"): -1}
_SURROGATE = re.compile("[\ud800-\udfff]")
_RECORD_TYPE = re.compile(rb'"type"\s*:\s*"RECORD"')
_STREAM = re.compile(rb'"stream"\s*:\s*"((?:[^"\\]|\\.){0,200})"')


class SetAsideError(Exception):
    """A RECORD line to keep byte for byte instead of delivering; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def nesting_depth(line: bytes) -> int:
    """How deep a JSON line's arrays and objects nest (brackets inside strings not counted).
    Cheap for nearly every line: only one holding more than MAX_DEPTH brackets is scanned."""
    if line.count(b"{") + line.count(b"[") <= MAX_DEPTH:
        return 0
    brackets = _STRING.sub(b'""', line).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def is_record_line(line: bytes) -> bool:
    """Whether a line that could not be read says it is a Singer RECORD."""
    return _RECORD_TYPE.search(line) is not None


def stream_of(line: bytes) -> str:
    """The stream a line names, for messages (``unknown`` when it names none)."""
    found = _STREAM.search(line)
    return found.group(1).decode(errors="replace") if found else "unknown"


def mend(line: bytes) -> dict[str, Any]:
    """The RECORD message a line holds, read tolerantly and repaired (module docstring).

    Raises:
        ValueError: not JSON even so, or not a RECORD message (the caller stops the run).
        SetAsideError: a RECORD that cannot be delivered as repaired.
    """
    repairs: list[str] = []
    if line.startswith(_BOM):
        line = line[len(_BOM) :]
        repairs.append(REPAIR_BOM)
    try:
        text = line.decode()
    except UnicodeDecodeError:
        text = line.decode(errors="replace")
        repairs.append(REPAIR_UTF8)
    try:
        message = json.loads(
            text, parse_float=exact_numbers.number, parse_int=_integer, parse_constant=_Constant
        )
    except RecursionError:
        raise SetAsideError(f"nested too deep to read (over {MAX_DEPTH} levels)") from None
    record = message.get("record") if isinstance(message, dict) else None
    if not isinstance(record, dict) or message.get("type") != "RECORD":
        raise ValueError("a line that is no RECORD message cannot be repaired")
    for field in IDENTITY_FIELDS:
        in_id: list[str] = []
        _mended(record.get(field), in_id)
        if in_id:
            raise SetAsideError(
                f"{field} needs a repair ({', '.join(in_id)}): it could make two ids one"
            )
    found: list[str] = []
    mended = _mended(record, found)
    repairs += found
    held = mended.get(REPAIRS_FIELD)
    if held is None:
        mended[REPAIRS_FIELD] = repairs
    elif isinstance(held, list):
        held += repairs
    else:
        raise SetAsideError(
            f"the record needs a repair ({', '.join(repairs)}) and its repairs is no list"
        )
    message["record"] = mended
    return message


def unusable_record(message: dict[str, Any]) -> str | None:
    """Why a RECORD message read as JSON cannot be delivered (None: it can): singer-sdk would
    stop the run on it with a traceback."""
    if not isinstance(message.get("record"), dict):
        return "its record is not a JSON object"
    if not isinstance(message.get("stream"), str):
        return "it names no stream"
    return None


class _Constant(str):
    """NaN, Infinity or -Infinity as read (json's parse_constant)."""

    __slots__ = ()


class _WideInteger(str):
    """The text of an integer of more than MAX_INT_DIGITS digits (no reader downstream holds
    it as a number: Python's int refuses to read or write it)."""

    __slots__ = ()


def _integer(text: str) -> Any:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        return _WideInteger(text)
    return exact_numbers.integer(text)


def _mended(value: Any, found: list[str]) -> Any:
    """``value`` with lone surrogates as U+FFFD and constants as plain strings; each kind of
    repair made noted once in ``found``."""
    kind = value.__class__
    if kind is _Constant or kind is _WideInteger:
        _note(found, REPAIR_CONSTANT if kind is _Constant else REPAIR_WIDE)
        return str(value)
    if kind is str:
        if _SURROGATE.search(value) is None:
            return value
        _note(found, REPAIR_SURROGATE)
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if kind is dict:
        return {_mended(key, found): _mended(item, found) for key, item in value.items()}
    if kind is list:
        return [_mended(item, found) for item in value]
    return value


def _note(found: list[str], repair: str) -> None:
    if repair not in found:
        found.append(repair)


class InputLines:
    """What the reader did with lines it could not take as they were: repairs counted, lines
    kept byte for byte in ``set_aside``."""

    def __init__(self, set_aside: SetAsideLines) -> None:
        self.set_aside = set_aside
        self.repaired: Counter[str] = Counter()  # repair -> records of this run
        self.records_repaired = 0

    def repaired_record(self, number: int, message: dict[str, Any]) -> None:
        """Count (and log the first of each kind of) the repairs ``mend`` made."""
        self.records_repaired += 1
        record = message["record"]
        for repair in record[REPAIRS_FIELD]:
            if repair in (REPAIR_SURROGATE, REPAIR_UTF8, REPAIR_CONSTANT, REPAIR_WIDE, REPAIR_BOM):
                if not self.repaired[repair]:
                    logger.warning(
                        "input line %d (stream %s): %s; delivered with the repair named in its "
                        "repairs (first of its kind; counted in the summary)",
                        number,
                        message.get("stream"),
                        repair,
                    )
                self.repaired[repair] += 1

    def keep(self, number: int, line: bytes, reason: str) -> None:
        """Set a RECORD line aside byte for byte, with one log line."""
        raw = line.removesuffix(b"\n").removesuffix(b"\r")
        stream = stream_of(raw)
        self.set_aside.add(
            {
                "source": SOURCE,
                "stream": stream,
                "reason": reason,
                "line_base64": base64.b64encode(raw).decode(),
                "byte_length": len(raw),
            }
        )
        logger.warning(
            "input line %d (stream %s): set aside byte for byte in %s: %s",
            number,
            stream,
            self.set_aside.raw.path,
            reason,
        )

    def describe(self) -> str:
        """``", 2 records repaired (1 lone UTF-16 ...)"``, or "" when none was."""
        if not self.repaired:
            return ""
        kinds = ", ".join(f"{n} {repair}" for repair, n in self.repaired.most_common())
        return f", {self.records_repaired} input records repaired ({kinds})"
