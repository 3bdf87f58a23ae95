"""The adaptive window planner on its own: widths grow over empty ranges, follow the data's
weight, split in halves, respect window_hours and Amplitude's 365-day limit, cover every hour."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from tap_amplitude.windows import (
    MAX_WINDOW_HOURS,
    Window,
    WindowPlanner,
    WindowTooLargeError,
    api_hour,
    bookmark_text,
    floor_hour,
)

START = datetime(2023, 1, 1, tzinfo=UTC)
MB = 1 << 20


def hours(n: int) -> timedelta:
    return timedelta(hours=n)


def walk(planner: WindowPlanner, bytes_per_hour: float) -> list[Window]:
    """Run the planner to the end, each window weighing bytes_per_hour * its hours."""
    windows = []
    while (window := planner.next_window()) is not None:
        windows.append(window)
        planner.completed(window, int(bytes_per_hour * window.hours))
        assert len(windows) < 10_000
    return windows


def test_windows_tile_the_range_exactly_without_gaps_or_overlaps():
    end = START + hours(1000)
    windows = walk(WindowPlanner(START, end, target_bytes=50 * MB), bytes_per_hour=3 * MB)
    assert windows[0].start == START
    assert windows[-1].end == end
    assert all(a.end == b.start for a, b in itertools.pairwise(windows))


def test_empty_history_is_crossed_in_a_few_growing_windows():
    end = START + timedelta(days=730)
    windows = walk(WindowPlanner(START, end, target_bytes=256 * MB), bytes_per_hour=0)
    assert len(windows) < 10
    assert [w.hours for w in windows[:4]] == [24, 96, 384, 1536]
    assert max(w.hours for w in windows) == MAX_WINDOW_HOURS


def test_dense_data_gives_windows_near_the_target_size():
    planner = WindowPlanner(START, START + hours(500), target_bytes=100 * MB)
    windows = walk(planner, bytes_per_hour=25 * MB)
    assert [w.hours for w in windows[1:4]] == [4, 4, 4]


def test_growth_after_sparse_data_is_bounded_per_step():
    planner = WindowPlanner(START, START + timedelta(days=400), target_bytes=100 * MB)
    first = planner.next_window()
    assert first is not None
    planner.completed(first, 1)  # one byte in a day: sparse
    second = planner.next_window()
    assert second is not None
    assert second.hours == 24 * 8


def test_window_hours_bounds_every_window():
    planner = WindowPlanner(START, START + timedelta(days=30), target_bytes=256 * MB, max_hours=6)
    windows = walk(planner, bytes_per_hour=0)
    assert {w.hours for w in windows} == {6}


def test_split_halves_down_to_one_hour_then_refuses():
    planner = WindowPlanner(START, START + timedelta(days=30), target_bytes=MB)
    window = planner.next_window()
    assert window is not None
    widths = [window.hours]
    while window.hours > 1:
        window = planner.split(window)
        widths.append(window.hours)
        assert window.start == START
    assert widths == [24, 12, 6, 3, 1]
    with pytest.raises(WindowTooLargeError):
        planner.split(window)


def test_after_a_refusal_windows_do_not_grow_back_into_the_refused_range():
    planner = WindowPlanner(START, START + timedelta(days=30), target_bytes=100 * MB)
    wide = planner.next_window()
    assert wide is not None
    half = planner.split(wide)  # 24 h refused: 12 h next
    planner.completed(half, 1)  # the first half turned out nearly empty
    following = planner.next_window()
    assert following is not None
    assert following.hours == 12  # not 8x wider: the refused day's heavy part is still ahead
    planner.completed(following, 1)
    beyond = planner.next_window()
    assert beyond is not None
    assert beyond.hours == 96  # past the refused range, sizing is free again


def test_outcomes_for_a_window_that_is_not_current_are_rejected():
    planner = WindowPlanner(START, START + hours(48), target_bytes=MB)
    with pytest.raises(ValueError, match="not the current one"):
        planner.completed(Window(START + hours(1), START + hours(2)), 0)


def test_last_window_stops_at_the_end_and_then_none():
    planner = WindowPlanner(START, START + hours(5), target_bytes=MB)
    window = planner.next_window()
    assert window == Window(START, START + hours(5))
    planner.completed(window, 0)
    assert planner.next_window() is None


def test_text_forms_of_hours():
    moment = datetime(2024, 3, 1, 7, 45, 12, 5, tzinfo=UTC)
    assert floor_hour(moment) == datetime(2024, 3, 1, 7, tzinfo=UTC)
    assert bookmark_text(moment) == "2024-03-01T07:00:00+00:00"
    assert api_hour(floor_hour(moment)) == "20240301T07"
    assert Window(START, START + hours(24)).last_hour == START + hours(23)
