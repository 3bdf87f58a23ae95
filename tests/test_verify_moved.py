"""`target-posthog-verify` and records whose event_time is out of range (a device clock at year
1, before 1970, or decades ahead): target-posthog delivers them at client_event_time (or
server_received_time), Amplitude counts them at their event_time. The ledger keeps that hour
(ledger_moved), so the period Amplitude counts them in explains them, once, in SQLite and
PostgreSQL registries alike."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.pipeline_harness import DRILL_START, build_drill_store
from tests.testbed.dashboard import NOT_IN_CHARTS
from tests.verify_harness import Migration, event_hours

ODD_TIMES = ("0001-01-01 00:00:00", "2099-12-31 05:10:00", "1969-12-31 23:30:00")
WHY = "event_time before 1970 or more than 23 h after the run's start"


@pytest.mark.parametrize("registry", ["sqlite", "postgresql"])
def test_events_delivered_at_another_time_are_explained_where_amplitude_counts_them(
    tmp_path: Path, registry: str, request: pytest.FixtureRequest
) -> None:
    store = build_drill_store(tmp_path / "export")
    extra = build_drill_store(tmp_path / "extra", seed=4, hours=2, events=30)
    odd = [
        r
        for r in extra.iter_events()
        if r.get("event_type") not in NOT_IN_CHARTS and r["client_event_time"] >= str(DRILL_START)
    ][:4]
    for record, when in zip(odd, ODD_TIMES, strict=False):
        record["event_time"] = when
    for name in ("event_time", "client_event_time", "server_received_time"):
        odd[3].pop(name)  # no time at all: dead-lettered, and Amplitude counts it nowhere
    store.add_records(odd)
    migration = Migration(tmp_path, store)
    if registry == "postgresql":
        migration.pipeline.target_config["alias_registry"] = request.getfixturevalue("postgres_url")
    try:
        migration.run()
        default = migration.verify()
        year_1 = migration.verify("--start", "0001-01-01", "--end", "0001-01-02")
        ahead = migration.verify(
            "--period", "hour", "--start", "2099-12-31T05:00", "--end", "2099-12-31T06:00"
        )
        before_1970 = migration.verify("--start", "1969-12-31", "--end", "1970-01-01")
    finally:
        migration.stop()
    delivered = [
        next(iter(event_hours([{"timestamp": r["client_event_time"].replace(" ", "T")}])))
        for r in odd[:3]
    ]
    assert default.returncode == 0, default.stdout + default.stderr
    # Delivered at client_event_time: counted there, in no_event_time, not against Amplitude.
    assert sum(int(row["no_event_time"]) for row in default.periods()) == 3
    assert sum(int(row["delivered_elsewhere"]) for row in default.rows) == 0
    cases = (
        (year_1, "0001-01-01", delivered[0][:10]),
        (ahead, "2099-12-31T05:00Z", delivered[1]),
        (before_1970, "1969-12-31", delivered[2][:10]),
    )
    for report, period, where in cases:
        assert report.returncode == 0, report.stdout + report.stderr
        row = report.row(period)
        assert (row["amplitude"], row["delivered_elsewhere"], row["read"]) == ("1", "1", "0")
        assert row["status"] == (  # was "before start_date, not migrated", or "not read yet"
            f"delivered at another time (1, at client_event_time or server_received_time in "
            f"{where}: {WHY})"
        )
        assert (row["not_read_yet"], row["before_start"], row["after_end"]) == ("0", "0", "0")
        # The record without any time is not taken for it (was "no event time (1, see the
        # rows at the end)" here, and "1 of them match periods above" there).
        untimed = [r for r in report.rows if r["period"].startswith("no event time")]
        assert [r["status"].count("match periods above") for r in untimed] == [0]
        outside = report.outside()
        assert outside is not None and outside["status"] == "OK"
        assert int(outside["no_event_time"]) == 3  # the three, delivered at their other time


def test_an_event_too_large_dated_year_1_is_dead_lettered_where_amplitude_counts_it(
    tmp_path: Path,
) -> None:
    """Dead letters are in the ledger at their event_time: one too large for PostHog, dated
    year 1, was at its client_event_time instead (the time it would have been sent at), so
    year 1 read "before start_date, not migrated (1 ...)" and 2024-05-01 "dead-lettered"."""
    store = build_drill_store(tmp_path / "export")
    extra = build_drill_store(tmp_path / "extra", seed=4, hours=2, events=30)
    big = next(
        r
        for r in extra.iter_events()
        if r.get("event_type") not in NOT_IN_CHARTS and r["client_event_time"] >= str(DRILL_START)
    )
    big["event_time"] = ODD_TIMES[0]
    big["event_properties"] = {"blob": "x" * 1_000_000}
    store.add_records([big])
    migration = Migration(tmp_path, store)
    try:
        migration.run()
        default = migration.verify()
        year_1 = migration.verify("--start", "0001-01-01", "--end", "0001-01-02")
    finally:
        migration.stop()
    assert default.returncode == 0, default.stdout + default.stderr
    assert [row["status"] for row in default.periods()] == ["OK"]
    outside = default.outside()
    assert outside is not None and outside["status"].startswith("dead-lettered (1: event too")
    assert year_1.returncode == 0, year_1.stdout + year_1.stderr
    row = year_1.row("0001-01-01")
    assert (row["amplitude"], row["read"], row["dead_lettered"]) == ("1", "1", "1")
    assert row["status"] == (
        f"dead-lettered (1: event too large for PostHog 1; see {tmp_path / 'run'}"
        "/dead-letter.jsonl)"
    )


def test_a_registry_from_before_migration_12_verifies_without_those_hours(tmp_path: Path) -> None:
    """The verification opens the registry read-only, so one the migration has not opened
    since this version (schema 11, no ledger_moved) is verified as before: such an event reads
    as uploaded before start_date, and nothing fails."""
    store = build_drill_store(tmp_path / "export")
    extra = build_drill_store(tmp_path / "extra", seed=4, hours=2, events=30)
    odd = next(
        r
        for r in extra.iter_events()
        if r.get("event_type") not in NOT_IN_CHARTS and r["client_event_time"] >= str(DRILL_START)
    )
    odd["event_time"] = ODD_TIMES[0]
    store.add_records([odd])
    migration = Migration(tmp_path, store)
    try:
        migration.run()
        with sqlite3.connect(migration.pipeline.target_config["alias_registry"]) as connection:
            connection.execute("DROP TABLE ledger_moved")
            connection.execute("DELETE FROM schema_migrations WHERE version = 12")
        connection.close()
        year_1 = migration.verify("--start", "0001-01-01", "--end", "0001-01-02")
    finally:
        migration.stop()
    assert year_1.returncode == 0, year_1.stdout + year_1.stderr
    assert year_1.row("0001-01-01")["status"] == (
        "uploaded before start_date or after end_date, outside this job's range (1: before "
        "2024-05-01T00:00Z or after 2024-05-02T00:00Z)"
    )
