"""`target-posthog-verify` and the migration's ledger: dead letters and unreadable lines as
explained rows, each counted once; the registry alone verifies, SQLite or PostgreSQL."""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import orjson
from target_posthog.ledger_view import read_ledger
from target_posthog.profiles import UPDATE_MARKER

from tests.pipeline_harness import (
    DRILL_START,
    build_drill_store,
)
from tests.target_support import run_target, target_config
from tests.testbed.dashboard import NOT_IN_CHARTS
from tests.testbed.events import ExportSpec
from tests.verify_harness import Migration, backdated, chart_days_of, event_hours


def test_dead_letters_are_explained_rows(tmp_path: Path) -> None:
    store = build_drill_store(tmp_path / "export", invalid_fraction=0.03)
    migration = Migration(tmp_path, store)
    try:
        migration.run()
        report = migration.verify()
    finally:
        migration.stop()
    assert report.returncode == 0, report.stdout + report.stderr
    letters = [orjson.loads(line) for line in (tmp_path / "run" / "dead-letter.jsonl").open("rb")]
    by_day: Counter[str] = Counter()
    by_upload: Counter[str] = Counter()
    reasons: dict[str, Counter[str]] = {}
    for letter in letters:
        record = letter["record"]
        when = _readable_time(record.get("event_time"))
        if when is None:
            by_upload[record["server_upload_time"][:13].replace(" ", "T")] += 1  # as exported
        else:
            by_day[when[:10]] += 1
            reasons.setdefault(when[:10], Counter())[letter["reason"]] += 1
    assert by_day and by_upload
    assert {
        row["period"]: int(row["dead_lettered"])
        for row in report.rows
        if int(row["dead_lettered"]) and not row["period"].startswith("no event time")
    } == dict(by_day)
    untimed = {
        row["period"].removeprefix("no event time, uploaded "): int(row["dead_lettered"])
        for row in report.rows
        if row["period"].startswith("no event time")
    }
    assert untimed == dict(by_upload)
    # Each record once: the column totals are the files' counts.
    assert sum(int(row["dead_lettered"]) for row in report.rows) == len(letters)
    assert sum(int(row["no_event_time"]) for row in report.rows) == sum(by_upload.values())
    for day, counted in reasons.items():  # the reasons, most frequent first
        ranked = sorted(counted.items(), key=lambda item: (-item[1], item[0]))
        top = ", ".join(f"{reason} {n}" for reason, n in ranked[:3])
        assert report.row(day)["status"].startswith(f"dead-lettered ({by_day[day]}: {top}")
    for period, status in report.not_ok().items():
        assert status.startswith("dead-lettered") and "dead-letter.jsonl" in status, period
        assert "missing in PostHog" not in status and "unexplained" not in status


def test_unreadable_lines_are_explained_and_the_registry_alone_verifies(tmp_path: Path) -> None:
    store = build_drill_store(tmp_path / "export")
    spoils = [b"null", b'{"event_type":"Half","user_id":"u', b"\x00\x1f\x8b\xff not a line"]
    lost = store.spoil_lines(DRILL_START + timedelta(hours=5), spoils)
    migration = Migration(tmp_path, store)
    try:
        migration.run()
        report = migration.verify("--period", "hour")
        # A fresh folder holding the registry and nothing else of the migration's (its dead
        # letters, set-aside lines and run folder are gone): the same report.
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        shutil.copy(migration.pipeline.target_config["alias_registry"], fresh / "registry.sqlite")
        shutil.rmtree(tmp_path / "run")
        alone = migration.verify("--period", "hour", cwd=fresh, alias_registry="registry.sqlite")
    finally:
        migration.stop()
    assert report.returncode == 0, report.stdout + report.stderr
    set_aside = tmp_path / "run" / "dead-letter.unreadable-lines.jsonl"
    charted = [r for r in lost if r.get("event_type") not in NOT_IN_CHARTS]
    assert charted  # the spoiled lines were events Amplitude's charts count
    gaps = event_hours([{"timestamp": r["event_time"].replace(" ", "T")} for r in charted])
    expected = {
        hour: f"possibly unreadable lines ({n} of those set aside, uploaded 2024-05-01T05: "
        "Amplitude counts them by an event_time the lines no longer show; see the rows at the end)"
        for hour, n in gaps.items()
    }
    expected["no event time, uploaded 2024-05-01T05"] = (
        f"unreadable lines set aside (3, see {set_aside}); {len(charted)} of them possibly "
        "events of periods above that lack events (each matched to the nearest such period at "
        "or before its upload hour)"
    )
    assert report.not_ok() == expected
    for hour, n in gaps.items():
        row = report.row(hour)
        assert int(row["amplitude"]) - int(row["read"]) + int(row["person_group_updates"]) == n
        assert int(row["no_event_time"]) == 0  # named in the status, counted once below
    assert int(report.row("no event time, uploaded 2024-05-01T05")["no_event_time"]) == 3
    assert sum(int(row["no_event_time"]) for row in report.rows) == 3  # was 3 + len(charted)
    assert sum(int(row["read"]) for row in report.rows) == store.event_count - 3
    assert alone.returncode == 0, alone.stdout + alone.stderr
    assert alone.rows == report.rows


def _readable_time(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%dT%H")
    except ValueError:
        return None


def test_a_ledger_in_a_postgresql_registry_verifies_the_same(
    tmp_path: Path, postgres_url: str
) -> None:
    store = build_drill_store(tmp_path / "export")
    migration = Migration(tmp_path, store)
    migration.pipeline.target_config["alias_registry"] = postgres_url
    try:
        migration.run()
        clean = migration.verify()
        migration.posthog.remove_events(
            lambda e: (
                e["timestamp"].startswith("2024-05-01T07")
                and e["event"] != "$create_alias"
                and UPDATE_MARKER not in e["properties"]
            )
        )
        lost = migration.verify("--period", "hour", "--settle-hours", "0")
    finally:
        migration.stop()
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.not_ok() == {}
    assert sum(int(row["read"]) for row in clean.rows) == store.event_count
    assert lost.returncode == 1
    [(hour, status)] = lost.not_ok().items()
    assert hour == "2024-05-01T07:00Z" and status.startswith("missing in PostHog (")
    password = postgres_url.split(":")[2].split("@")[0]
    assert password not in clean.stdout + clean.stderr + lost.stdout + lost.stderr


def test_every_record_set_aside_reaches_the_ledger_even_one_singer_sdk_refuses(
    tmp_path: Path,
) -> None:
    """The ledger counts what the run set aside whichever way: records the mapping refuses (no
    time), an unreadable line, and an unreadable line singer-sdk refuses (no line_number), by
    upload hour (the hour being read when a record's own is unreadable)."""
    hour, later = "2024-03-01T05:00:00+00:00", "2024-03-01T06:00:00+00:00"
    line = {"member": "m_2024-03-01_5#0.json.gz", "line_number": 3, "reason": "not JSON",
            "line_base64": "bnVsbA==", "hour": hour}  # fmt: skip
    no_time = {"uuid": "0b9f1c2e-0000-4000-8000-000000000001", "event_type": "Clicked",
               "user_id": "u1", "server_upload_time": "2024-03-01 05:10:00.000000"}  # fmt: skip
    schema = {"type": "object", "properties": {k: {} for k in (*line, "source", "byte_length")}}
    messages = [
        {
            "type": "SCHEMA",
            "stream": "unreadable_lines",
            "schema": schema,
            "key_properties": ["member", "line_number"],
        },
        {"type": "RECORD", "stream": "unreadable_lines", "record": line},
        {
            "type": "RECORD",
            "stream": "unreadable_lines",
            "record": {k: v for k, v in line.items() if k != "line_number"},
        },
        {
            "type": "SCHEMA",
            "stream": "events",
            "schema": {"type": "object", "properties": {}},
            "key_properties": ["uuid"],
        },
        {"type": "RECORD", "stream": "events", "record": no_time},
        {"type": "STATE", "value": {"bookmarks": {"events": {"replication_key_value": hour}}}},
        # No readable upload time: counted in the hour being read (after the bookmark above).
        {"type": "RECORD", "stream": "events", "record": no_time | {"server_upload_time": "?"}},
        {"type": "STATE", "value": {"bookmarks": {"events": {"replication_key_value": later}}}},
    ]
    config = target_config(tmp_path)
    run = run_target(config, messages, tmp_path)
    assert run.returncode == 0, run.stderr
    ledger = read_ledger(config["alias_registry"])
    assert {(u.upload_hour, u.what, u.count) for u in ledger.untimed} == {
        ("2024-03-01T05", "unreadable lines set aside", 2),
        (
            "2024-03-01T05",
            "dead-lettered: no time: event_time, client_event_time, server_received_time all "
            "missing or not times",
            2,
        ),
    }


def test_records_without_event_time_delivered_at_client_event_time_verify_clean(
    tmp_path: Path,
) -> None:
    """Records whose event_time is missing or not a time: target-posthog sends them at their
    client_event_time ($amplitude_timestamp_from); Amplitude's charts count by event_time, so
    not in that hour. A complete migration verifies clean (exit 0), the hour's row counts them
    in no_event_time, and PostHog holds them there."""
    store = build_drill_store(tmp_path / "export")
    extra = build_drill_store(tmp_path / "extra", seed=3, hours=2, events=30)
    timeless = [  # dated within the report's periods (from start_date on)
        r
        for r in extra.iter_events()
        if r.get("event_type") not in NOT_IN_CHARTS and r["client_event_time"] >= str(DRILL_START)
    ][:3]
    timeless[0].pop("event_time")
    timeless[1]["event_time"] = None
    timeless[2]["event_time"] = "not a time"
    store.add_records(timeless)
    migration = Migration(tmp_path, store)
    try:
        migration.run()
        report = migration.verify("--period", "hour")
    finally:
        migration.stop()
    assert report.returncode == 0, report.stdout + report.stderr
    hours = event_hours([{"timestamp": r["client_event_time"].replace(" ", "T")} for r in timeless])
    for hour, n in hours.items():
        row = report.row(hour)
        assert int(row["no_event_time"]) == n
        assert row["delivered"] == row["posthog"]
        assert row["status"] == (
            f"no event time ({n} delivered at client_event_time or server_received_time: "
            "Amplitude's charts count by event_time)"
        )
    assert sum(int(row["no_event_time"]) for row in report.rows) == 3
    assert "unexplained" not in report.stdout


def test_records_without_event_time_never_take_the_place_of_events_never_read(
    tmp_path: Path,
) -> None:
    """Unreadable lines may be the events of the periods that lack some: each is matched to
    the gap nearest before its upload hour (was: greedily from the first period), and records
    dead-lettered for their time match none (Amplitude counts them in no period). Three events
    of 09:xx uploaded in an hour the run had read are never read: that hour is unexplained,
    exit 1 (was "no event time (n, see the rows at the end)", exit 0)."""
    store = build_drill_store(tmp_path / "export", invalid_fraction=0.01)
    spoils = [b"null", b'{"event_type":"Half","user_id":"u', b"\x00\x1f\x8b\xff not a line"]
    spoiled = store.spoil_lines(DRILL_START + timedelta(hours=20), spoils)
    migration = Migration(tmp_path, store)
    try:
        migration.run()
        clean = [migration.verify("--period", "hour"), migration.verify()]
        uploaded = DRILL_START + timedelta(hours=12)  # read by the run: these never will be
        lost = backdated(store, ExportSpec(start=uploaded, hours=1, events=4, seed=5),
                         tmp_path / "lost", timedelta(hours=3))  # fmt: skip
        hourly, daily = migration.verify("--period", "hour"), migration.verify()
    finally:
        migration.stop()
    untimed = [r for r in clean[0].rows if r["period"].startswith("no event time")]
    assert any("dead-lettered" in r["status"] for r in untimed)  # time dead letters: some
    charted = Counter(f"{r['event_time'][:13].replace(' ', 'T')}:00Z" for r in spoiled
                      if r.get("event_type") not in NOT_IN_CHARTS)  # fmt: skip
    for report in clean:
        assert report.returncode == 0, report.stdout + report.stderr
    set_aside = tmp_path / "run" / "dead-letter.unreadable-lines.jsonl"
    for hour, n in charted.items():  # the hour they were events of, not the first with a gap
        assert (
            clean[0]
            .row(hour)["status"]
            .endswith(
                f"possibly unreadable lines ({n} of those set aside, uploaded 2024-05-01T20: "
                "Amplitude counts them by an event_time the lines no longer show; see the rows at "
                "the end)"
            )
        )
    assert clean[0].row("no event time, uploaded 2024-05-01T20")["status"] == (
        f"unreadable lines set aside (3, see {set_aside}); {charted.total()} of them possibly "
        "events of periods above that lack events (each matched to the nearest such period at "
        "or before its upload hour)"
    )
    for row in untimed:
        if "dead-lettered" in row["status"]:
            assert row["status"].endswith(
                "in no period's Amplitude count: no event_time to count them by"
            )
    never = chart_days_of(lost)["2024-05-01"]
    assert never and {r["event_time"][:13] for r in lost} == {"2024-05-01 09"}
    assert charted.total() == 3  # no spoiled line is left to be one of them
    # The hour's record without an event type is read and in no chart: it hides none of them.
    hour = hourly.row("2024-05-01T09:00Z")
    assert "no event_type 1" in hour["status"]
    assert hourly.returncode == 1, hourly.stdout + hourly.stderr
    never_read = (
        f"unexplained ({never} that Amplitude counts were never read, or uploaded after end_date)"
    )
    assert hour["status"].endswith(never_read)
    assert [p for p, status in hourly.not_ok().items() if "unexplained" in status] == [
        "2024-05-01T09:00Z"
    ]
    assert daily.returncode == 1, daily.stdout + daily.stderr
    assert daily.row("2024-05-01")["status"].endswith(never_read)
