"""Hourly checkpoints inside an export window: the order its members are read in, and the
bookmark each completed hour allows.

An export holds one or more gzip JSON-lines members per hour, named
``<project>_<YYYY-MM-DD>_<H>#<n>.json.gz`` by the hour of their events' ``server_upload_time``
(the field the Export API selects by; see shared/reference/amplitude-export-api.md). Once every
member of hour H has been read in full, every event of H has been emitted, so the bookmark may
move to H + 1 h while the rest of the window is still to be read: a crash then costs at most the
hour being read, however wide the window.

The archive's own member order is not trusted: all members of a window are known before the
first is read (a zip's directory), so they are read sorted by (hour, part), and a part ``#1`` of
an earlier hour found further on in the archive is read with its hour, before that hour's
checkpoint. A member whose name gives no hour inside the window (unexpected naming) could hold
any hour, so such a window is read as one piece, in archive order, and checkpoints only at its
end, as every window did before hourly checkpoints.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from tap_amplitude.export import MemberRef, member_place
from tap_amplitude.windows import HOUR, Window


@dataclass(frozen=True)
class HourOfMembers:
    """Members to read one after the other, then ``checkpoint``: the bookmark they complete
    (the hour's exclusive end), or None when only the window's end may be bookmarked."""

    members: tuple[MemberRef, ...]
    checkpoint: dt.datetime | None


@dataclass(frozen=True)
class ReadingPlan:
    """A window's members in reading order, cut at hour boundaries.

    ``unplaced`` names the member that made the window fall back to one piece ('' otherwise).
    """

    hours: tuple[HourOfMembers, ...]
    unplaced: str = ""


def plan_window(window: Window, members: Sequence[MemberRef]) -> ReadingPlan:
    """Members grouped by hour, hours in order, parts in order within their hour.

    Every checkpoint lies inside ``(window.start, window.end]``. Pure: no I/O.
    """
    placed: list[tuple[dt.datetime, int, str, MemberRef]] = []
    for ref in members:
        place = member_place(ref.name)
        if place is None or not window.start <= place[0] < window.end:
            return ReadingPlan((HourOfMembers(tuple(members), None),), unplaced=str(ref))
        placed.append((*place, ref.name, ref))
    placed.sort(key=lambda item: item[:3])
    hours: list[HourOfMembers] = []
    start = 0
    for index, (hour, *_) in enumerate(placed):
        if index + 1 == len(placed) or placed[index + 1][0] != hour:
            group = tuple(item[3] for item in placed[start : index + 1])
            hours.append(HourOfMembers(group, hour + HOUR))
            start = index + 1
    return ReadingPlan(tuple(hours))
