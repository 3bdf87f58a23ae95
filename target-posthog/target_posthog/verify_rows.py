"""The verification's report: its columns, its rows, and the periods it compares (UTC hours or
days). The comparison that fills it is verify.py."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field

from target_posthog.counts import day_text

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)

COLUMNS = (
    "period",
    "amplitude",
    "read",
    "person_group_updates",
    "dead_lettered",
    "no_event_time",
    "delivered_elsewhere",
    "not_read_yet",
    "before_start",
    "after_end",
    "before_start_or_after_end",
    "delivered",
    "posthog",
    "status",
)


@dataclass
class Row:
    """One line of the report (a period, or a set of records without event time)."""

    period: str
    amplitude: int | None = None
    read: int = 0
    person_group_updates: int = 0
    dead_lettered: int = 0
    no_event_time: int = 0
    delivered_elsewhere: int = 0  # Amplitude counts them here; delivered at another time
    not_read_yet: int = 0
    before_start: int = 0  # uploaded before the migration's first hour: never migrated
    after_end: int = 0  # uploaded after end_date: outside this job's range
    before_start_or_after_end: int = 0  # a range within one period: either, Amplitude knows
    delivered: int = 0
    posthog: int | None = None
    notes: list[str] = field(default_factory=list)
    missing: int = 0
    unexplained: int = 0
    dead_records: int = 0  # records dead-lettered before sending (not refused events)
    dead_reasons: Counter[str] = field(default_factory=Counter)

    @property
    def status(self) -> str:
        return "; ".join(self.notes) or "OK"

    @property
    def ok(self) -> bool:
        """Nothing missing and nothing unexplained (explained gaps are fine)."""
        return not (self.missing or self.unexplained)

    def values(self) -> list[str | int | None]:
        return [getattr(self, column) for column in COLUMNS]


@dataclass(frozen=True)
class Plan:
    """What to compare: periods [start, end) of `step`, and how to judge recent deliveries."""

    start: dt.datetime
    end: dt.datetime
    by_day: bool
    now: dt.datetime
    settle: dt.timedelta
    dead_letter_file: str
    set_aside_file: str  # unreadable lines, beside the dead letters (setaside.py)
    start_date: dt.datetime | None = None  # tap-amplitude's, floored to its hour, if known
    end_date: dt.datetime | None = None  # tap-amplitude's (exclusive), if known

    @property
    def step(self) -> dt.timedelta:
        return DAY if self.by_day else HOUR

    def periods(self) -> list[dt.datetime]:
        return self.periods_within(self.start, self.end)

    def periods_within(self, low: dt.datetime, high: dt.datetime) -> list[dt.datetime]:
        """The periods of `step` from `low` up to `high` (exclusive)."""
        found, moment = [], low
        while moment < high:
            found.append(moment)
            moment += self.step
        return found

    def label(self, period: dt.datetime) -> str:
        day = day_text(period)
        return day if self.by_day else f"{day}T{period:%H}:00Z"


# A note: what, then "(" and its count, then the rest (the same words for the same cause).
_NOTE = re.compile(r"(?P<what>[^(]*\()(?P<count>\d+)(?P<rest>.*)", re.DOTALL)
_SUMMED = ("not_read_yet", "before_start", "after_end", "before_start_or_after_end", "unexplained")


def add_hour(day: Row, hour: Row) -> None:
    """Add an hour's judgement to the row of its day (a day judged hour by hour): the counts
    of each cause summed, and the notes of one cause (the same words) one note with their
    total, in the order first seen."""
    for name in _SUMMED:
        setattr(day, name, getattr(day, name) + getattr(hour, name))
    for note in hour.notes:
        found = _NOTE.fullmatch(note)
        for index, said in enumerate(day.notes):
            same = _NOTE.fullmatch(said)
            if found and same and (same["what"], same["rest"]) == (found["what"], found["rest"]):
                total = int(same["count"]) + int(found["count"])
                day.notes[index] = f"{found['what']}{total}{found['rest']}"
                break
        else:
            day.notes.append(note)


def floor(moment: dt.datetime, by_day: bool) -> dt.datetime:
    moment = moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if by_day else moment


def hour_key(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H").replace(tzinfo=dt.UTC)
