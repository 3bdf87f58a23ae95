"""The comparison: per period, what Amplitude counts, what the migration read and delivered,
what PostHog holds, and the explanation of every difference.

For each period (a UTC hour or day):
- Amplitude's count should equal the records read that are events in Amplitude's charts
  (person/group update rows are not; records delivered at another field's time count where their
  event_time is, "delivered at another time", not where they were read). Fewer read: unreadable
  lines uploaded in or after the period may explain some, "possibly" (verify_untimed.py:
  each matched to the gap nearest before its upload hour; records dead-lettered for their
  time explain none); the rest is "not read yet" while the migration has uploads left to read;
  in a period that begins before the migration's first upload hour (its start_date: the
  tap selects by upload time), events uploaded before it, which no run will read, "before
  start_date, not migrated"; in a period reaching past end_date (once passed), events uploaded
  after it; a label names every possibility the counts leave open (once end_date has passed,
  "or after end_date" too); else "unexplained". More read than counted: "unexplained". A day
  within which start_date or end_date falls is judged hour by hour (`hourly_days`).
- PostHog should hold every event the migration delivered (`EventHour.delivered`). Fewer:
  "not visible yet" if delivered within `settle` (PostHog's historical pipeline takes a
  while), else "missing in PostHog". More: "delivered after the last checkpoint" while the
  range is not read to its end (a run under way or stopped: the ledger records a segment only
  with the tap's next STATE), else "unexplained".
- Dead letters are explained ("dead-lettered (n, see FILE)").
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace

from target_posthog.ledger_view import EventHour, LedgerFigures
from target_posthog.mapping import NO_EVENT_TYPE
from target_posthog.verify_rows import HOUR, Plan, Row, add_hour, floor, hour_key
from target_posthog.verify_untimed import match_unreadable, possibly_note, untimed_row

AMPLITUDE_LOAD_DELAY = 2 * HOUR  # Amplitude exports an hour about 2 hours after it ends


def first_upload_hour(ledger: LedgerFigures) -> dt.datetime | None:
    """The first upload hour any run read (None: no run has read anything)."""
    return hour_key(ledger.read_spans[0][0]) if ledger.read_spans else None


def hourly_days(plan: Plan, ledger: LedgerFigures) -> list[dt.datetime]:
    """The report's days within which the migration's range starts or ends (start_date or
    end_date not at midnight): judged hour by hour, from Amplitude's hourly counts of those
    days (one more query each), so that day and hour reports agree. Judged as one, such a
    day's hours before start_date let a loss within the range pass as "before start_date"."""
    if not plan.by_day:
        return []
    bounds = [moment for moment in (_migration_start(plan, ledger), _range_end(plan, ledger))
              if moment is not None and moment != floor(moment, by_day=True)]  # fmt: skip
    return sorted({floor(moment, by_day=True) for moment in bounds} & set(plan.periods()))


def compare(
    plan: Plan,
    ledger: LedgerFigures,
    amplitude: dict[dt.datetime, int],
    posthog: dict[dt.datetime, int],
    posthog_outside: int = 0,
    amplitude_hours: dict[dt.datetime, int] | None = None,
) -> list[Row]:
    """The report's rows: one per period, one for the events dated outside the periods (the
    migration read them; `posthog_outside`: PostHog holds this many outside), then one per
    set of records without event time. `amplitude_hours`: Amplitude's counts per UTC hour of
    the `hourly_days`, which are then judged hour by hour (None: as whole days)."""
    by_period = _by_period(ledger.hours, plan.by_day)
    amplitude_totals = _totals(amplitude, plan.by_day)
    posthog_totals = _totals(posthog, plan.by_day)
    moved = _moved(ledger, plan.by_day)
    first = _migration_start(plan, ledger)
    # A run under way, or stopped (Ctrl-C, a crash) before its range's end: PostHog may hold
    # events confirmed after the tap's last STATE, which the ledger records only with the next.
    unfinished = first is None or _may_read_more(plan, ledger, first, first)
    split = set(hourly_days(plan, ledger)) if amplitude_hours is not None else set()
    hourly = replace(plan, by_day=False)
    by_hour, moved_hours = _by_period(ledger.hours, False), _moved(ledger, False)
    rows: list[Row] = []
    units: list[tuple[Plan, dt.datetime, Row, Row]] = []  # (its plan, start, row, report row)
    gaps: dict[dt.datetime, int] = {}
    for period in plan.periods():
        row = _row(plan, period, by_period.get(period, []))
        row.posthog = posthog_totals.get(period, 0)
        rows.append(row)
        if period not in split:
            row.amplitude = amplitude_totals.get(period, 0)
            _elsewhere(plan, row, moved.get(period, Counter()))
            gaps[period] = _gap(row)
            units.append((plan, period, row, row))
            continue
        row.amplitude = 0
        _elsewhere(plan, row, moved.get(period, Counter()))
        for hour in hourly.periods_within(period, period + plan.step):
            unit = _row(hourly, hour, by_hour.get(hour, []))
            unit.notes.clear()  # the day's row says these once
            unit.amplitude = (amplitude_hours or {}).get(hour, 0)
            unit.delivered_elsewhere = sum(moved_hours.get(hour, Counter()).values())
            row.amplitude += unit.amplitude
            gaps[hour] = _gap(unit)
            units.append((hourly, hour, unit, row))
    # Unreadable lines may be some of the events not read: matched all at once, each to the
    # gap nearest before its upload hour (verify_untimed.py), before any gap is judged.
    matches = match_unreadable(ledger.untimed, gaps)
    for unit_plan, start, unit, row in units:
        rest = gaps[start]
        uploads = [item.upload_hour for item, taken in zip(ledger.untimed, matches, strict=True)
                   if taken[start]]  # fmt: skip
        if uploads:
            # Counted in their own rows at the end (no_event_time), by upload hour: here only
            # named, so that the column's total is the number of such records, each once.
            matched = sum(taken[start] for taken in matches)
            unit.notes.append(possibly_note(matched, uploads))
            rest -= matched
        if rest:
            _judge_rest(unit_plan, unit, start, ledger, rest)
        if unit is not row:
            add_hour(row, unit)
    for period, row in zip(plan.periods(), rows, strict=True):
        _judge_posthog(plan, row, by_period.get(period, []), unfinished)
    outside = [hours for period, hours in by_period.items() if not plan.start <= period < plan.end]
    if outside or posthog_outside:
        rows.append(_outside_row(plan, [h for hours in outside for h in hours], posthog_outside,
                                 unfinished))  # fmt: skip
    rows.extend(
        untimed_row(plan, item, sum(taken.values()))
        for item, taken in zip(ledger.untimed, matches, strict=True)
    )
    return rows


def _by_period(hours: dict[str, EventHour], by_day: bool) -> dict[dt.datetime, list[EventHour]]:
    found: dict[dt.datetime, list[EventHour]] = {}
    for key, figures in hours.items():
        found.setdefault(floor(hour_key(key), by_day), []).append(figures)
    return found


def _moved(ledger: LedgerFigures, by_day: bool) -> dict[dt.datetime, Counter[str]]:
    found: dict[dt.datetime, Counter[str]] = {}
    for chart, delivered in ledger.moved.items():
        found.setdefault(floor(hour_key(chart), by_day), Counter()).update(delivered)
    return found


def _totals(counts: dict[dt.datetime, int], by_day: bool) -> Counter[dt.datetime]:
    totals: Counter[dt.datetime] = Counter()
    for moment, count in counts.items():
        totals[floor(moment, by_day)] += count
    return totals


def _row(plan: Plan, period: dt.datetime, hours: list[EventHour]) -> Row:
    row = Row(plan.label(period))
    for figures in hours:
        row.read += figures.read
        row.person_group_updates += figures.updates
        row.no_event_time += figures.no_event_time
        row.dead_lettered += figures.dead_lettered
        row.dead_records += sum(figures.dead.values())
        row.dead_reasons.update(figures.dead)
        if figures.refused:
            row.dead_reasons["refused by PostHog"] += figures.refused
        row.delivered += figures.delivered
    if row.dead_lettered:
        ranked = sorted(row.dead_reasons.items(), key=lambda item: (-item[1], item[0]))
        reasons = ", ".join(f"{reason} {n}" for reason, n in ranked[:3])
        more = ", ..." if len(row.dead_reasons) > 3 else ""
        row.notes.append(
            f"dead-lettered ({row.dead_lettered}: {reasons}{more}; see {plan.dead_letter_file})"
        )
    return row


def _elsewhere(plan: Plan, row: Row, moved: Counter[str]) -> None:
    """Notes for the row's records Amplitude counts elsewhere or here though read elsewhere.
    `moved`: delivered hour -> records Amplitude counts in this period by their event_time
    (out of range) that the migration delivered at another field's time."""
    # Amplitude's charts count by event_time (counting-apis.md): records without a usable one
    # are in PostHog at another field's time (client_event_time ...), not in this count.
    if row.no_event_time:
        row.notes.append(
            f"no event time ({row.no_event_time} delivered at client_event_time or "
            "server_received_time: Amplitude's charts count by event_time)"
        )
    # ... and those whose event_time is a time out of range are in this count: the ledger
    # knows by which event_time hour (ledger_moved), so they are explained here, once.
    row.delivered_elsewhere = sum(moved.values())
    if row.delivered_elsewhere:
        where = sorted({plan.label(floor(hour_key(hour), plan.by_day)) for hour in moved})
        shown = ", ".join(where[:3]) + (", ..." if len(where) > 3 else "")
        row.notes.append(
            f"delivered at another time ({row.delivered_elsewhere}, at client_event_time or "
            f"server_received_time in {shown}: event_time before 1970 or more than 23 h after "
            "the run's start)"
        )


def _gap(row: Row) -> int:
    """The events Amplitude counts in the row's period that the migration has not read (0 if
    it read more: judged here)."""
    assert row.amplitude is not None
    # Records without an event type are in no chart (a chart counts events by type): read,
    # not counted. Leaving them in what Amplitude should count hid as many real losses.
    uncharted = row.dead_reasons[NO_EVENT_TYPE]
    chart_read = row.read - row.person_group_updates - row.no_event_time - uncharted
    gap = row.amplitude - chart_read - row.delivered_elsewhere
    if gap < 0:
        # Other records dead-lettered as unusable (no ids ...) may be rows Amplitude's charts
        # leave out: up to their number, the difference is theirs.
        excess = -gap - (row.dead_records - uncharted)
        if excess > 0:
            row.unexplained += excess
            row.notes.append(f"unexplained ({excess} read that Amplitude does not count)")
        return 0
    return gap


def _judge_rest(
    plan: Plan, row: Row, period: dt.datetime, ledger: LedgerFigures, rest: int
) -> None:
    """`rest` events Amplitude counts in the period were not read, and no record without
    event time may be one of them: why."""
    first = _migration_start(plan, ledger)
    before = first is not None and period < first
    # Once end_date has passed, events of any period may have been uploaded after it
    # (Amplitude counts an event by its time, however late it was uploaded): every label
    # names that possibility. Those of a period wholly after it were: none is unread.
    ends = _range_end(plan, ledger)
    passed = ends is not None and ends < plan.now
    after_end = passed and ends is not None and period + plan.step > ends
    unread = not (after_end and ends and period >= ends) and _may_read_more(
        plan, ledger, period, first if before and first else period
    )
    if unread:
        # Uploaded in hours no run has read yet, or outside the range: only Amplitude knows
        # which (it counts by event time); reading the rest tells them apart, but running
        # again never reads what was uploaded outside the range: named too.
        outside = " or ".join(
            kind for kind, known in (("before start_date", before), ("after end_date", passed))
            if known
        )  # fmt: skip
        row.not_read_yet = rest
        also = f", or uploaded {outside}" if outside else ""
        row.notes.append(f"not read yet{also} ({rest}, run the migration again)")
    elif before and first and passed and ends:
        # Before start_date once end_date has passed (or a range within one period): the rest
        # was uploaded before the range or after it, and the counts (Amplitude's by event
        # time) cannot tell which.
        row.before_start_or_after_end = rest
        row.notes.append(
            f"uploaded before start_date or after end_date, outside this job's range ({rest}: "
            f"before {first:%Y-%m-%dT%H:00Z} or after {ends:%Y-%m-%dT%H:%MZ})"
        )
    elif before and first:
        row.before_start = rest
        row.notes.append(
            f"before start_date, not migrated ({rest} uploaded before {first:%Y-%m-%dT%H:00Z}, "
            "where the migration starts)"
        )
    elif after_end and ends:
        row.after_end = rest
        row.notes.append(
            f"uploaded after end_date, outside this job's range ({rest} after "
            f"{ends:%Y-%m-%dT%H:%MZ})"
        )
    else:
        # Every upload hour that can hold the period's events has been read: nothing explains
        # it (late uploads after end_date could, but the counts cannot tell: say so).
        row.unexplained += rest
        late = ", or uploaded after end_date" if _ends_before_loaded(plan) else ""
        row.notes.append(f"unexplained ({rest} that Amplitude counts were never read{late})")


def _migration_start(plan: Plan, ledger: LedgerFigures) -> dt.datetime | None:
    """The first upload hour of the migration's range: tap-amplitude's start_date, or the
    first hour the ledger shows read if earlier or if start_date is not known (hours after
    start_date with no uploads at all may then be left out, which changes no count). Parallel
    range jobs that have not run yet are only known through start_date."""
    read = hour_key(ledger.read_spans[0][0]) if ledger.read_spans else None
    known = [moment for moment in (plan.start_date, read) if moment is not None]
    return min(known, default=None)


def _range_end(plan: Plan, ledger: LedgerFigures) -> dt.datetime | None:
    """Where the migration's range ends (None: end_date unknown): end_date, or as far as any
    job has read if further (parallel range jobs: end_date is that of the job at hand)."""
    if plan.end_date is None:
        return None
    return max([plan.end_date, *(hour_key(high) for _, high in ledger.read_spans)])


def _loaded(plan: Plan) -> dt.datetime:
    """The first upload hour Amplitude may not have finished loading."""
    return floor(plan.now, by_day=False) - AMPLITUDE_LOAD_DELAY


def _ends_before_loaded(plan: Plan) -> bool:
    return plan.end_date is not None and plan.end_date < _loaded(plan)


def _may_read_more(
    plan: Plan, ledger: LedgerFigures, period: dt.datetime, since: dt.datetime
) -> bool:
    """Uploads from `since` on (the period's start, or the migration's first hour if later)
    that no run has read may hold the period's events (Amplitude counts an event by its time,
    however late it was uploaded): true unless one span the migration read runs from `since`
    or before up to the end of the migration's range (end_date, or the hours Amplitude has
    finished loading if earlier or end_date is unknown) and past the period (within that
    range). Parallel range jobs each have their span: a gap between them is not read yet, and
    the range runs at least as far as any job has read (end_date is the last job's)."""
    needed = max(_loaded(plan), period + plan.step)
    if plan.end_date is not None:
        furthest = max((hour_key(high) for _, high in ledger.read_spans), default=plan.end_date)
        needed = min(needed, max(floor(plan.end_date, by_day=False), furthest))
    for low, high in ledger.read_spans:
        if hour_key(low) <= since < hour_key(high):
            return hour_key(high) < needed
    return True


def _judge_posthog(
    plan: Plan, row: Row, hours: Iterable[EventHour], unfinished: bool = False
) -> None:
    assert row.posthog is not None
    gap = row.delivered - row.posthog
    if gap > 0:
        newest = max((figures.written_at for figures in hours), default="")
        if newest and dt.datetime.fromisoformat(newest) > plan.now - plan.settle:
            ready = dt.datetime.fromisoformat(newest) + plan.settle
            row.notes.append(
                f"not visible yet ({gap}), delivered at {newest}: verify again after "
                f"{ready:%Y-%m-%d %H:%M} UTC"
            )
        else:
            row.missing = gap
            row.notes.append(f"missing in PostHog ({gap})")
    elif gap < 0 and unfinished:
        row.notes.append(
            f"delivered after the last checkpoint ({-gap} more in PostHog than the ledger "
            "records, run the migration again)"
        )
    elif gap < 0:
        row.unexplained += -gap
        row.notes.append(f"unexplained ({-gap} more in PostHog than delivered)")


def _outside_row(plan: Plan, hours: list[EventHour], posthog: int, unfinished: bool) -> Row:
    """Events dated outside the report's periods (late uploads of older events, device clocks
    set to 1970 or 2099 ...): counted in one row, PostHog against the ledger; Amplitude is not
    asked (each period would cost a query: --start and --end compare them period by period)."""
    row = _row(plan, plan.start, hours)
    row.period = (
        f"event time outside {plan.label(plan.start)} .. {plan.label(plan.end)} (Amplitude "
        "not asked: --start/--end compare them by period)"
    )
    row.posthog = posthog
    _judge_posthog(plan, row, hours, unfinished)
    return row
