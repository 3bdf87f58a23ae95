"""Times in records: which values are times, and their one form (UTC with microseconds).

The tap writes every time as ``YYYY-MM-DDTHH:MM:SS.ffffff+00:00`` (normalise_record respells
Amplitude's own ``YYYY-MM-DD HH:MM:SS.ffffff``, which is UTC). :func:`fit_time` gives any other
ISO 8601 date and time that form exactly: an offset is applied, ``Z`` or no offset means UTC,
digits below a microsecond are cut (a :class:`CutTime`, counted apart). :class:`TimesCheck`
says, in a few C-level passes, whether a record's times are all in that form already (nearly
every record), so the per-time parse runs only for the rest.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
from functools import partial
from typing import Any

from singer_plugin_common.amplitude_records import TIME_FIELDS

MISSING = object()  # not a time: no exact conversion

_ISO_TIME = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:[.,](\d+))?([Zz]|([+-])(\d{2}):?(\d{2}))?"
)
# The tap's form of a time, `2024-03-01T10:00:00.123456+00:00`, with its digits read as 0.
_TIME_TEMPLATE = b"0000-00-00T00:00:00.000000+00:00"
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_FIVE = ord("5")
_DATE_HOUR = operator.itemgetter(slice(0, 13))
_not_none = partial(operator.is_not, None)
_FROM_ISO = dt.datetime.fromisoformat
MAX_HOURS = 1024  # real `YYYY-MM-DDTHH` remembered


class CutTime(str):
    """A time converted with digits below a microsecond cut (counted apart)."""


def fit_time(value: str) -> tuple[bool, Any]:
    """(True, None) when ``value`` is in the tap's form already; else (False, the tap's form,
    UTC with microseconds, ``2024-03-01T05:10:00.000000+00:00``) for any ISO 8601 date and
    time, or (False, :data:`MISSING`) for anything else. No offset means UTC (Amplitude's
    times are UTC). Digits below a microsecond are cut (the time moves back, never past its
    second): the result is then a :class:`CutTime`."""
    match = _ISO_TIME.fullmatch(value)
    if match is None:
        return False, MISSING
    day, clock, fraction, _zone, sign, zone_hours, zone_minutes = match.groups()
    digits = fraction or ""
    try:
        moment = dt.datetime.fromisoformat(f"{day}T{clock}.{digits[:6].ljust(6, '0')}")
        if sign is not None:
            offset = dt.timedelta(hours=int(zone_hours), minutes=int(zone_minutes))
            if offset >= dt.timedelta(hours=24):
                return False, MISSING
            moment -= offset if sign == "+" else -offset
    except (ValueError, OverflowError):
        return False, MISSING
    canonical = f"{moment.isoformat(timespec='microseconds')}+00:00"
    if canonical == value:
        return True, None
    return False, CutTime(canonical) if digits[6:].strip("0") else canonical


class TimesCheck:
    """Whether all of a record's time fields are the tap's form of a real time."""

    def __init__(self, fields: tuple[str, ...]) -> None:
        self.fields = fields
        self._real_hours: set[str] = set()  # `YYYY-MM-DDTHH` seen to be real

    def fit(self, record: dict[str, Any]) -> bool:
        """True when every time is the tap's RFC 3339 form of a real time, in C-level passes
        over all of them at once (a fromisoformat per time cost more than the rest of
        conform.py)."""
        present: list[Any] = [*filter(_not_none, map(record.get, self.fields))]
        if not present:
            return True
        try:
            joined = "".join(present).encode("ascii")
        except (TypeError, UnicodeEncodeError):  # not strings (a type misfit already), not ASCII
            return False
        # Shape, separators and digits at once: every digit read as 0 must give the template.
        if joined.translate(_DIGITS_AS_ZERO) != _TIME_TEMPLATE * len(present):
            return False
        if max(joined[14::32]) > _FIVE or max(joined[17::32]) > _FIVE:  # minutes, seconds
            return False
        hours = {*map(_DATE_HOUR, present)}
        return hours <= self._real_hours or self._learn_hours(hours)

    def misfits(self, record: dict[str, Any]) -> tuple[str, ...]:
        """The time fields holding a string that is not in the tap's form."""
        return tuple(
            key
            for key in self.fields
            if (time := record.get(key)).__class__ is str and fit_time(time) != (True, None)
        )

    def _learn_hours(self, hours: set[str]) -> bool:
        """Whether each `YYYY-MM-DDTHH` is a real day and hour; remembers those that are."""
        try:
            for hour in hours - self._real_hours:
                _FROM_ISO(hour + ":00")
        except ValueError:
            return False
        if len(self._real_hours) >= MAX_HOURS:
            self._real_hours.clear()
        self._real_hours |= hours
        return True


def normalise_time(value: Any) -> Any:
    """``YYYY-MM-DD HH:MM:SS[.ffffff]`` -> RFC 3339 UTC ``YYYY-MM-DDTHH:MM:SS.ffffff+00:00``.

    String surgery once the value is known to be a real time in exactly that form: this runs
    for every time of every event. Any other value, including one in the right shape that is
    not a time (``2024:03:01 05:10:00.000000``) or another form of a time (``...Z``, an
    offset, a week date: times.py converts those, keeping the exported value), is passed
    through exactly as exported.
    """
    if type(value) is str and _AMPLITUDE_TIME.fullmatch(value) and _is_time(value):
        if len(value) == 26:
            return f"{value[:10]}T{value[11:]}+00:00"
        return f"{value[:10]}T{value[11:]}.000000+00:00"
    return value


_from_iso = dt.datetime.fromisoformat
_AMPLITUDE_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{6})?", re.ASCII)


def normalise_record(record: dict[str, Any]) -> dict[str, Any]:
    """Rewrite the time fields in place; every other field, known or not, is kept as is."""
    for field in TIME_FIELDS:
        value = record.get(field)
        # The common shape is handled inline (a function call per field is measurable here):
        # the separators, ASCII digits for the fraction, then fromisoformat for the rest.
        if (
            type(value) is str
            and len(value) == 26
            and value[10] == " "
            and value[19] == "."
            and value[4] == "-"
            and value[7] == "-"
            and value.isascii()
            and value[20:].isdigit()
            and _is_time(value)
        ):
            record[field] = f"{value[:10]}T{value[11:]}+00:00"
        elif value is not None:
            record[field] = normalise_time(value)
    return record


def _is_time(value: str) -> bool:
    try:
        _from_iso(value)
    except ValueError:
        return False
    return True


def upload_hour(record: dict[str, Any]) -> dt.datetime | None:
    """The hour of a record's ``server_upload_time`` (the field export files are cut by), in
    any ISO 8601 form the tap converts (times.py); None when it gives none."""
    value = record.get("server_upload_time")
    if value.__class__ is not str:
        return None
    fits, converted = fit_time(value)
    text = value if fits else converted
    if text is MISSING:
        return None
    return dt.datetime.fromisoformat(f"{str(text)[:13]}:00:00+00:00")
