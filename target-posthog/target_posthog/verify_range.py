"""The report's range: `--start`/`--end` as a user gives them, checked, and the default range.

No value is changed silently: `--start`/`--end` are UTC days or hours (ISO 8601). An empty
value, a UTC offset other than +00:00, an `--end` not after `--start`, or a range past
`LAST_END` is refused in one line (`click.UsageError`: exit 2, verify_cli.py); a time within a
period (05:30, or an hour by day) is widened to its whole period, and that is said in one line.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from target_posthog.counts import CountingError, day_text, offset_text
from target_posthog.ledger_view import LedgerFigures
from target_posthog.verify import first_upload_hour
from target_posthog.verify_rows import DAY, HOUR, floor, hour_key

# The latest exclusive end a report can have: a day earlier than `datetime.max`, so that a
# period's end, its day in a time zone 14 h east of UTC and the day after it all exist.
LAST_END = dt.datetime(9999, 12, 30, tzinfo=dt.UTC)


def moment_option(name: str, value: str | None) -> dt.datetime | None:
    """`--start`/`--end` as an aware UTC datetime (None: not given); `click.UsageError`
    (one line) for text that is not a UTC date or time."""
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.UsageError(
            f"{name} {value!r} is not a UTC date (YYYY-MM-DD) or hour (YYYY-MM-DDTHH:00)"
        ) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    offset = moment.utcoffset()
    if offset:  # periods are UTC: moving the user's time to UTC would change the value asked
        utc = moment.astimezone(dt.UTC)
        raise click.UsageError(
            f"{name} {value!r} is not in UTC (offset {offset_text(offset)}): periods are UTC, give "
            f"{day_text(utc)}T{utc:%H:%M}"
        )
    return moment.astimezone(dt.UTC)


def check_options(start: dt.datetime | None, end: dt.datetime | None) -> None:
    """`click.UsageError` (one line) unless `--end` is after `--start` and both are before
    `LAST_END`."""
    for name, moment in (("--start", start), ("--end", end)):
        if moment is not None and (moment > LAST_END or (name == "--start" and moment == LAST_END)):
            raise click.UsageError(
                f"{name} {_text(moment)} is past what the report can hold: it ends by "
                f"{day_text(LAST_END)}"
            )
    if start is not None and end is not None and end <= start:
        raise click.UsageError(f"--end {_text(end)} is not after --start {_text(start)}")


def _text(moment: dt.datetime) -> str:
    """A UTC day, or a day and time (4-digit years also before 1000)."""
    if moment.time() == dt.time():
        return day_text(moment)
    return f"{day_text(moment)}T{moment:%H:%M}" + (f":{moment:%S}" if moment.second else "")


def setting_time(config: dict[str, Any], name: str) -> dt.datetime | None:
    """A time setting taken from tap-amplitude (ISO 8601, a date alone is fine), in UTC and
    floored to its hour, as tap-amplitude reads it (it selects whole upload hours: a run with
    end_date 17:45 reads up to 17:00); None if unset. CountingError (one line) if it is not a
    time."""
    moment = _exact_setting_time(config, name)
    return floor(moment, by_day=False) if moment else None


def hour_rounding_note(config: dict[str, Any]) -> str | None:
    """One line when start_date or end_date is not on the hour (what the tap reads instead)."""
    moved = []
    for name, what in (("amplitude_start_date", "from"), ("amplitude_end_date", "up to")):
        exact = _exact_setting_time(config, name)
        if exact is not None and floor(exact, by_day=False) != exact:
            label = name.removeprefix("amplitude_")
            moved.append(f"{label} {_text(exact)} {what} {_text(floor(exact, by_day=False))}")
    if not moved:
        return None
    return "tap-amplitude reads whole upload hours, so this report does too: " + ", ".join(moved)


def _exact_setting_time(config: dict[str, Any], name: str) -> dt.datetime | None:
    text = config.get(name)
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(str(text))
    except ValueError:
        raise CountingError(
            f"{name} {text!r} (tap-amplitude's {name.removeprefix('amplitude_')}) is not an "
            "ISO 8601 time, e.g. 2024-01-01T00:00:00Z"
        ) from None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def report_end(
    config: dict[str, Any], ledger: LedgerFigures, now: dt.datetime, by_day: bool
) -> dt.datetime:
    """The default end of the report: through the migration's end_date (tap-amplitude's, as
    `amplitude_end_date`), else through now, so Amplitude's history that no run has read yet
    is reported too; at least through the last upload hour any job read (end_date is the last
    job's). Events dated later are counted in the report's "outside" row."""
    end_date = setting_time(config, "amplitude_end_date")
    if end_date is not None and end_date > LAST_END:
        raise CountingError(
            f"amplitude_end_date {config['amplitude_end_date']!r} is past what the report can "
            f"hold: give --end (at most {day_text(LAST_END)})"
        )
    end = end_date or now + dt.timedelta(microseconds=1)
    read_to = max((hour_key(high) for _, high in ledger.read_spans), default=end)
    last = floor(max(end, read_to) - dt.timedelta(microseconds=1), by_day)
    return last + (DAY if by_day else HOUR)


def report_range(
    config: dict[str, Any],
    options: dict[str, Any],
    ledger: LedgerFigures,
    now: dt.datetime,
    say: Any,
) -> tuple[dt.datetime, dt.datetime, dt.datetime | None]:
    """(start, exclusive end, start_date floored to its hour) of the report: --start/--end as
    whole periods, by default the migration's upload range, start_date (or the first upload
    hour read, if earlier or start_date is unknown) through end_date or now. Not the event
    times read: a few device clocks at 1970 or 2099 would make it decades of periods.
    `click.UsageError` if one given option is not after the other's default."""
    by_day = options["period"] == "day"
    first_read = first_upload_hour(ledger)
    if first_read is None:
        raise CountingError("the migration's ledger holds no records yet: run the migration")
    start_date = setting_time(config, "amplitude_start_date")  # floored, as the tap reads it
    note = hour_rounding_note(config)
    if note:
        say(note)
    first = min(first_read, start_date) if start_date else first_read
    start = floor(options["start"] or first, by_day)
    if options["end"]:
        end = floor(options["end"], by_day)
        if end < options["end"]:  # within a period: through that whole period
            end += DAY if by_day else HOUR
    else:
        end = report_end(config, ledger, now, by_day)
    if end <= start:  # one of them given (check_options compared two; defaults never cross)
        if options["end"] is None:
            raise click.UsageError(
                f"--start {_text(options['start'])} is not before the report's default end "
                f"{_text(end)} (end_date, or now): give --end too"
            )
        raise click.UsageError(
            f"--end {_text(options['end'])} is not after the report's default start "
            f"{_text(start)} (start_date, or the first upload hour read): give --start too"
        )
    given = [t for t in (options["start"], options["end"]) if t]
    if any(floor(t, by_day) != t for t in given):
        whole = (
            f"days: {day_text(start)} .. {day_text(end)} (exclusive); --period hour compares hours"
            if by_day
            else f"hours: {_text(start)} .. {_text(end)} (exclusive)"
        )
        say(f"--start/--end widened to whole UTC {whole}")
    return start, end, start_date
