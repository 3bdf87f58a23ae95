"""Records without a usable event time in the verification: which gaps they may explain.

Two kinds reach the ledger without an event hour (ledger_view.Untimed), by upload hour:
- unreadable lines set aside: Amplitude holds these events and counts each by its event_time,
  which the line no longer shows. Each may be a missing event of any period up to its upload
  hour (an event is uploaded after it happens, mostly soon after: Amplitude's SDKs send within
  seconds to minutes, and a device offline for days is the exception). Each line is matched to
  the period with a gap nearest at or before its upload hour, never more lines to a period than
  its gap, never one line to two periods: a gap larger than the lines matched to it keeps its
  rest, judged as any other (not read yet, unexplained ...). Matching in period order instead
  let lines uploaded late in a range absorb an early period's real loss. A match is possible,
  not certain (Amplitude cannot say which hour a given line's event is in): said so.
- records dead-lettered because their time cannot be read (event_time missing or not a time):
  Amplitude's charts count an event by its event_time (counting-apis.md), and these have none
  to count them by, so they are in no period's count and explain no gap (as records delivered
  at another field's time: verify.py leaves them out of what Amplitude should count).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from target_posthog.ledger_view import Untimed
from target_posthog.verify_rows import Plan, Row, hour_key


def is_unreadable(item: Untimed) -> bool:
    return item.what.startswith("unreadable")


def match_unreadable(
    untimed: list[Untimed], gaps: dict[dt.datetime, int]
) -> list[Counter[dt.datetime]]:
    """Per item of `untimed`, the periods (keys of `gaps`: a period's start -> events Amplitude
    counts in it that were not read; days, hours, or both when some days are judged by hour)
    its lines are matched to, and how many: unreadable lines only, each to the gap nearest at
    or before its upload hour (a period starting at or before it; an unknown upload hour: any
    period, latest first). Earlier uploads choose first (they have fewer periods to choose
    from)."""
    left = {period: gap for period, gap in gaps.items() if gap > 0}
    matched: list[Counter[dt.datetime]] = [Counter() for _ in untimed]
    order = sorted(
        (index for index, item in enumerate(untimed) if is_unreadable(item)),
        key=lambda index: (not untimed[index].upload_hour, untimed[index].upload_hour),
    )
    for index in order:
        item = untimed[index]
        upload = hour_key(item.upload_hour) if item.upload_hour else None
        count = item.count
        for period in sorted(left, reverse=True):
            if not count:
                break
            if (upload is not None and period > upload) or not left[period]:
                continue
            share = min(count, left[period])
            left[period] -= share
            matched[index][period] += share
            count -= share
    return matched


def possibly_note(matched: int, uploads: list[str]) -> str:
    """A period's note for the unreadable lines matched to its gap."""
    shown = ", ".join(uploads[:3]) + (", ..." if len(uploads) > 3 else "")
    return (
        f"possibly unreadable lines ({matched} of those set aside, uploaded {shown}: Amplitude "
        "counts them by an event_time the lines no longer show; see the rows at the end)"
    )


def untimed_row(plan: Plan, item: Untimed, matched: int) -> Row:
    """The row of one set of records without event time (their own row, by upload hour)."""
    label = f"no event time, uploaded {item.upload_hour or 'at an unknown hour'}"
    row = Row(label, no_event_time=item.count)
    if item.what.startswith("dead-lettered"):
        row.dead_lettered = item.count
    where = f"see {plan.set_aside_file if is_unreadable(item) else plan.dead_letter_file}"
    row.notes.append(f"{item.what} ({item.count}, {where})")
    if matched:
        row.notes.append(
            f"{matched} of them possibly events of periods above that lack events (each "
            "matched to the nearest such period at or before its upload hour)"
        )
    elif not is_unreadable(item):
        row.notes.append("in no period's Amplitude count: no event_time to count them by")
    return row
