"""Hourly checkpoints inside wide export windows (issue 16): the real tap CLI against the Export
API stand-in and export files, and the reading plan on its own."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tap_amplitude.checkpoints import plan_window
from tap_amplitude.export import MemberRef
from tap_amplitude.windows import Window

from tests.conftest import TAP_API_KEY, TAP_DAY, TAP_SECRET, TapRun, bookmark_of, tap_config
from tests.testbed.amplitude import AmplitudeStandIn
from tests.testbed.events import ExportSpec
from tests.testbed.store import ExportStore, Member

HOURS = 48
END = TAP_DAY + timedelta(hours=HOURS)


def hour(n: int) -> datetime:
    return TAP_DAY + timedelta(hours=n)


def parted_store(directory: Path, *, seed: int = 5) -> ExportStore:
    """Two days, about 40 events an hour in parts of at most 12 lines (several per hour)."""
    spec = ExportSpec(start=TAP_DAY, hours=HOURS, events=2_000, seed=seed)
    return ExportStore.build(directory, spec, max_lines_per_member=12)


def record_hour(record: dict[str, Any]) -> datetime:
    """The hour of a record's server_upload_time (as exported, or as the tap emits it)."""
    moment = datetime.fromisoformat(record["server_upload_time"])
    return moment.replace(minute=0, second=0, microsecond=0, tzinfo=moment.tzinfo or UTC)


def uuids_by_hour(store: ExportStore) -> dict[datetime, set[str]]:
    by_hour: dict[datetime, set[str]] = {}
    for record in store.iter_events():
        by_hour.setdefault(record_hour(record), set()).add(record["uuid"])
    return by_hour


def assert_checkpoints_sound(
    run: TapRun, store: ExportStore, by_hour: dict[datetime, set[str]] | None = None
) -> list[str]:
    """Each STATE comes after every record of the hours it covers, and no record of a covered
    hour comes after it; returns the bookmarks in order."""
    by_hour = by_hour or uuids_by_hour(store)
    seen: set[str] = set()
    covered = TAP_DAY
    bookmarks: list[str] = []
    for message in run.messages:
        if message["type"] == "RECORD":
            record = message["record"]
            assert record_hour(record) >= covered, f"{record['uuid']} after a STATE covering it"
            seen.add(record["uuid"])
        elif message["type"] == "STATE":
            text = bookmark_of(message["value"])
            assert text is not None
            bookmark = datetime.fromisoformat(text)
            assert bookmark >= covered, "a bookmark went backwards"
            missing = {u for h, uuids in by_hour.items() if h < bookmark for u in uuids} - seen
            assert not missing, f"STATE {text} before {len(missing)} records of hours it covers"
            covered = bookmark
            bookmarks.append(text)
    return bookmarks


def hour_ends(store: ExportStore) -> set[str]:
    return {(h + timedelta(hours=1)).isoformat() for h in store.hours()}


# --- the reading plan -------------------------------------------------------------------


def refs(*names: str) -> list[MemberRef]:
    return [MemberRef(Path("export.zip"), f"187520/{name}") for name in names]


def test_plan_reads_hours_in_order_and_parts_of_an_hour_together():
    window = Window(hour(0), hour(24))
    members = refs(
        "187520_2024-03-01_3#0.json.gz",
        "187520_2024-03-01_1#10.json.gz",
        "187520_2024-03-01_1#0.json.gz",
        "187520_2024-03-01_3#1.json.gz",
        "187520_2024-03-01_1#2.json.gz",  # a later part of an earlier hour, further on
    )
    plan = plan_window(window, members)
    assert plan.unplaced == ""
    assert [(h.checkpoint, [m.name.split("_")[-1] for m in h.members]) for h in plan.hours] == [
        (hour(2), ["1#0.json.gz", "1#2.json.gz", "1#10.json.gz"]),  # part numbers, not text
        (hour(4), ["3#0.json.gz", "3#1.json.gz"]),
    ]


@pytest.mark.parametrize(
    "odd_name",
    [
        "events-2024-03-01.json.gz",  # no hour in the name
        "187520_2024-02-29_23#0.json.gz",  # an hour before the window
        "187520_2024-03-02_0#0.json.gz",  # the window's end hour (exclusive)
        "187520_2024-13-01_3#0.json.gz",  # no such date
        "187520_2024-03-01_24#0.json.gz",  # no such hour
    ],
)
def test_plan_falls_back_to_the_window_end_for_a_member_it_cannot_place(odd_name):
    window = Window(hour(0), hour(24))
    members = refs("187520_2024-03-01_5#0.json.gz", odd_name, "187520_2024-03-01_2#0.json.gz")
    plan = plan_window(window, members)
    assert odd_name in plan.unplaced
    assert len(plan.hours) == 1
    assert plan.hours[0].checkpoint is None
    assert list(plan.hours[0].members) == members  # all of them, in archive order


def test_plan_of_an_empty_window_has_no_hours():
    assert plan_window(Window(hour(0), hour(3)), []).hours == ()


# --- the tap, through the Export API stand-in --------------------------------------------


@pytest.fixture(scope="module")
def parted(tmp_path_factory: pytest.TempPathFactory) -> ExportStore:
    """Shared by the tests that only read it (zip_order is reset after each use)."""
    return parted_store(tmp_path_factory.mktemp("parted"))


def test_a_wide_window_checkpoints_after_every_hour(parted, run_tap):
    with AmplitudeStandIn(parted, api_key=TAP_API_KEY, secret_key=TAP_SECRET) as api:
        run = run_tap(tap_config(api, window_hours=HOURS, end_date=END.isoformat()))
    assert run.returncode == 0, run.stderr
    assert len(api.requests) == 1, "the whole range was meant to be one window"
    assert any(len(members) > 2 for members in parted._members.values())  # several parts
    bookmarks = assert_checkpoints_sound(run, parted)
    assert bookmarks == sorted(hour_ends(parted) | {END.isoformat()})
    assert len(run.records) == parted.event_count


def _parts_zero_first_then_the_rest_reversed(members: list[Member]) -> list[Member]:
    """Every hour's part #0 in hour order, then all later parts, last hour first: part #1 of the
    first hour is the archive's last member."""
    return [m for m in members if m.part == 0] + [m for m in reversed(members) if m.part > 0]


def _shuffled(members: list[Member]) -> list[Member]:
    shuffled = list(members)
    random.Random(16).shuffle(shuffled)
    return shuffled


@pytest.mark.parametrize(
    "order", [_parts_zero_first_then_the_rest_reversed, _shuffled], ids=["late-parts", "shuffled"]
)
def test_parts_out_of_order_in_the_archive_never_let_a_bookmark_pass_them(parted, run_tap, order):
    parted.zip_order = order
    try:
        with AmplitudeStandIn(parted, api_key=TAP_API_KEY, secret_key=TAP_SECRET) as api:
            run = run_tap(tap_config(api, window_hours=HOURS, end_date=END.isoformat()))
    finally:
        parted.zip_order = list
    assert run.returncode == 0, run.stderr
    bookmarks = assert_checkpoints_sound(run, parted)
    assert bookmarks == sorted(hour_ends(parted) | {END.isoformat()})
    assert sorted(run.uuids()) == sorted(parted.uuids())


def test_a_member_named_without_an_hour_falls_back_to_the_window_end_and_says_so_once(
    tmp_path, run_tap
):
    store = parted_store(tmp_path / "export")
    arcname = store.arcname
    # Hours 5 and 30 (one in each one-day window) come under names that give no hour.
    renamed = {hour(5), hour(30)}
    store.arcname = lambda m: (  # type: ignore[method-assign]
        f"{store.project_id}/unexpected-{m.hour:%H}-{m.part}.json.gz"
        if m.hour in renamed
        else arcname(m)
    )
    with AmplitudeStandIn(store, api_key=TAP_API_KEY, secret_key=TAP_SECRET) as api:
        run = run_tap(tap_config(api, window_hours=24, end_date=END.isoformat()))
    assert run.returncode == 0, run.stderr
    bookmarks = assert_checkpoints_sound(run, store)
    assert bookmarks == [hour(24).isoformat(), END.isoformat()]  # window ends only
    assert sorted(run.uuids()) == sorted(store.uuids())
    said = [line for line in run.stderr.splitlines() if "does not name an hour" in line]
    assert len(said) == 1, said
    assert "INFO" in said[0]
    assert "unexpected-05-0.json.gz" in said[0]
    done = next(line for line in run.stderr.splitlines() if "Done:" in line)
    members = store.members()
    assert (
        f"{len(members)} members read (0 empty, "
        f"{sum(m.hour in renamed for m in members)} named without an hour)"
    ) in done


def test_a_corrupt_member_mid_window_leaves_the_bookmark_at_the_end_of_the_hour_before(
    tmp_path, run_tap
):
    store = parted_store(tmp_path / "export")
    broken_hour = hour(17)
    by_hour = uuids_by_hour(store)
    broken = store.corrupt_member(broken_hour)
    with AmplitudeStandIn(store, api_key=TAP_API_KEY, secret_key=TAP_SECRET) as api:
        config = tap_config(api, window_hours=HOURS, end_date=END.isoformat(), max_retries=0)
        run = run_tap(config)
    assert run.returncode != 0
    assert broken.name in run.stderr
    assert run.bookmark == broken_hour.isoformat()
    bookmarks = assert_checkpoints_sound(run, store, by_hour)
    assert bookmarks == sorted(h for h in hour_ends(store) if h <= broken_hour.isoformat())


def test_a_resume_asks_again_from_the_hour_being_read_only(parted, run_tap, tmp_path):
    with AmplitudeStandIn(parted, api_key=TAP_API_KEY, secret_key=TAP_SECRET) as api:
        config = tap_config(api, end_date=END.isoformat())  # default, adaptive windows
        first = run_tap(config)
        assert first.returncode == 0, first.stderr
        widths = {r.end - r.start for r in api.requests}
        assert max(widths) >= timedelta(hours=23), "the run did not use wide windows"
        # Resume from a checkpoint in the middle of the first window.
        mid_window = next(s for s in first.states if bookmark_of(s) == hour(13).isoformat())
        asked_before = len(api.requests)
        resumed = run_tap(config, state=mid_window)
        first_asked = api.requests[asked_before]
    assert resumed.returncode == 0, resumed.stderr
    assert first_asked.start == hour(13)
    assert sorted(resumed.uuids()) == sorted(
        r["uuid"] for r in parted.iter_events(hour(13), END - timedelta(hours=1))
    )


# --- the tap, reading export files ------------------------------------------------------


def test_local_files_checkpoint_every_hour_even_inside_one_zip(parted, run_tap, tmp_path):
    folder = tmp_path / "downloads"
    folder.mkdir()
    parted.zip_order = _shuffled
    try:
        parted.write_zip(folder / "export.zip", hour(0), hour(HOURS - 1))
    finally:
        parted.zip_order = list
    later = (END + timedelta(days=30)).isoformat()
    config = {"export_path": str(folder), "start_date": TAP_DAY.isoformat(), "end_date": later}
    run = run_tap(config)
    assert run.returncode == 0, run.stderr
    bookmarks = assert_checkpoints_sound(run, parted)
    assert bookmarks == sorted(hour_ends(parted))  # up to the last hour on disk, no further
    assert sorted(run.uuids()) == sorted(parted.uuids())
