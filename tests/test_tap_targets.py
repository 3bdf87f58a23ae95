"""tap-amplitude loads into the Singer targets people use, value for value, run after run.

Each target is installed the way Meltano installs it (`meltano install`: its own virtualenv
under `.meltano/loaders/`, the pins in meltano.yml) and driven by the real `meltano run`:
target-jsonl, MeltanoLabs' target-postgres into the session's real PostgreSQL server
(tests/postgres.py) and target-duckdb. The export holds generated events and lines planted with
what real exports hold: values spelled in another type, values no type can take, fields the
schema does not name. Every field of every event is read back from the target and compared with
what the export says, by the rules tap-amplitude's README gives. Each target runs a full run over
the first two days; then, once a third day's files have landed, an incremental run from
Meltano's stored STATE that loads that day alone; then the same again with nothing new, which
loads nothing. After each run the target holds every event once, nothing lost, nothing doubled.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import psycopg
import pytest
from psycopg.rows import dict_row
from tap_amplitude.conform import field_kind
from tap_amplitude.lines import REPAIR_CONTROL, REPAIR_NUL
from tap_amplitude.schema import EVENTS_SCHEMA, EXTRA_FIELD

from tests.meltano_harness import REPO_ROOT, MeltanoProject, install_plugins
from tests.postgres import PostgresServer
from tests.testbed.events import ExportSpec, generate_events

pytestmark = pytest.mark.e2e

START = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
DAYS = 3
PROJECT = 187520
KINDS = {name: field_kind(spec) for name, spec in EVENTS_SCHEMA["properties"].items()}
DUCKDB_PYTHON = REPO_ROOT / ".meltano" / "loaders" / "target-duckdb" / "venv" / "bin" / "python"

# What real exports hold besides the documented types: (line text added to an event, the fields
# the record must then hold, what additional_properties must hold). Each is planted in one
# event of each day.
PLANTED: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ('"paying": "maybe"', {"paying": None}, {"paying": "maybe"}),
    (
        '"version_name": 1.10',
        {"version_name": "1.10"},
        {
            "as_exported": {"version_name": 1.1},
            "number_texts": {"/additional_properties/as_exported/version_name": "1.10"},
        },
    ),
    # A number a double would change: its text also kept as a string (number_texts.py).
    ('"location_lat": 47.10', {"location_lat": 47.1}, {"number_texts": {"/location_lat": "47.10"}}),
    ('"user_id": 12345', {"user_id": "12345"}, {"as_exported": {"user_id": 12345}}),
    (
        '"amplitude_id": "987654321"',
        {"amplitude_id": 987654321},
        {"as_exported": {"amplitude_id": "987654321"}},
    ),
    ('"amplitude_id": 9223372036854775808', {"amplitude_id": None}, {"amplitude_id": 2**63}),
    ('"location_lat": "n/a"', {"location_lat": None}, {"location_lat": "n/a"}),
    (
        '"location_lng": "13.4050"',
        {"location_lng": 13.405},
        {"as_exported": {"location_lng": "13.4050"}, "number_texts": {"/location_lng": "13.4050"}},
    ),
    ('"$schema": "12"', {"$schema": 12}, {"as_exported": {"$schema": "12"}}),
    (
        '"amplitude_attribution_ids": ["a1", "b2"]',
        {"amplitude_attribution_ids": '["a1", "b2"]'},
        {"as_exported": {"amplitude_attribution_ids": ["a1", "b2"]}},
    ),
    ('"is_attribution_event": "false"', {"is_attribution_event": False}, {}),
    (
        '"client_event_time": "2024-03-01 10:00:00.123"',
        {"client_event_time": "2024-03-01T10:00:00.123000+00:00"},
        {"as_exported": {"client_event_time": "2024-03-01 10:00:00.123"}},
    ),
    (
        '"server_received_time": "2024-03-01T12:00:00.5+02:00"',
        {"server_received_time": "2024-03-01T10:00:00.500000+00:00"},
        {"as_exported": {"server_received_time": "2024-03-01T12:00:00.5+02:00"}},
    ),
    (
        '"event_properties": {"price": 1.10, "big": 1e400, "long": 12.345678901234567890123}',
        {
            "event_properties": {"price": 1.1, "big": "1e400", "long": 12.345678901234567890123},
            "repairs": [
                "number beyond a double's range kept as a string of its exact text (e.g. 1e400)"
            ],
        },
        {
            "number_texts": {
                "/event_properties/price": "1.10",
                "/event_properties/long": "12.345678901234567890123",
            }
        },
    ),
    ('"processed_time": "yesterday"', {"processed_time": None}, {"processed_time": "yesterday"}),
    (
        '"brand_new_field": {"x": [1.5, "y"]}, "another_new": 7',
        {},
        {"brand_new_field": {"x": [1.5, "y"]}, "another_new": 7},
    ),
    (
        '"event_properties": ["a", "list"]',
        {"event_properties": None},
        {"event_properties": ["a", "list"]},
    ),
    # A negative zero: a decimal (target-postgres's numeric) stores 0, so its text is kept.
    (
        '"location_lng": -0.0, "event_properties": {"z": -0}',
        {"location_lng": -0.0, "event_properties": {"z": 0}},
        {"number_texts": {"/location_lng": "-0.0", "/event_properties/z": "-0"}},
    ),
    # NUL, which PostgreSQL's text and jsonb cannot hold (target-postgres failed for good).
    (
        '"platform": "a\\u0000b", "event_properties": {"k\\u0000": "v"}',
        {"platform": "a\ufffdb", "event_properties": {"k\ufffd": "v"}, "repairs": [REPAIR_NUL]},
        {},
    ),
    (
        '"os_name": "raw\x00nul"',
        {"os_name": "raw\ufffdnul", "repairs": [REPAIR_CONTROL, REPAIR_NUL]},
        {},
    ),
]
SET_ASIDE = b'{"event_type":"cut\x00'
_PLANTED_KEY = re.compile(r'"([^"]+)":')


@dataclass
class Export:
    """Export files on disk (S3-export layout: one .json.gz per hour) and what each event must
    become in a target, by uuid."""

    folder: Path
    expected: dict[str, dict[str, Any]] = field(default_factory=dict)
    days: dict[str, int] = field(default_factory=dict)  # uuid -> day index
    set_aside: list[bytes] = field(default_factory=list)  # lines for unreadable_lines

    def write_day(self, day: int, events: list[dict[str, Any]]) -> None:
        by_hour: dict[int, list[bytes]] = {}
        for n, event in enumerate(events):
            line, expected = self._line(event, PLANTED[n] if n < len(PLANTED) else None)
            hour = dt.datetime.fromisoformat(event["server_upload_time"]).hour
            by_hour.setdefault(hour, []).append(line)
            self.expected[event["uuid"]] = expected
            self.days[event["uuid"]] = day
        date = (START + dt.timedelta(days=day)).date().isoformat()
        for hour, lines in by_hour.items():
            if day == 0 and not self.set_aside:  # a line no reading makes a record, with a NUL
                self.set_aside.append(SET_ASIDE)
                lines.append(SET_ASIDE)
            path = self.folder / f"{PROJECT}_{date}_{hour}#0.json.gz"
            path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))

    def uuids(self, days: range) -> set[str]:
        return {uuid for uuid, day in self.days.items() if day in days}

    @staticmethod
    def _line(
        event: dict[str, Any], planted: tuple[str, dict[str, Any], dict[str, Any]] | None
    ) -> tuple[bytes, dict[str, Any]]:
        """The export line, and the record the tap must make of it (README's rules)."""
        text, fields, extra = planted or ("", {}, {})
        for key in _PLANTED_KEY.findall(text):
            event.pop(key, None)
        expected = {**event}
        for key, kind in KINDS.items():
            value = expected.get(key)
            if kind == "date-time" and isinstance(value, str):
                expected[key] = f"{value.replace(' ', 'T')}+00:00"
            if key == "paying" and value is not None:
                expected[key] = {"true": True, "false": False}[value]
        expected.update(fields)
        if extra:
            expected[EXTRA_FIELD] = extra
        line = orjson.dumps(event)
        if text:
            line = line[:-1] + b", " + text.encode() + b"}"
        return line, expected


def split_by_day(spec: ExportSpec) -> list[list[dict[str, Any]]]:
    days: list[list[dict[str, Any]]] = [[] for _ in range(DAYS)]
    for event in generate_events(spec):
        upload = dt.datetime.fromisoformat(event["server_upload_time"]).replace(tzinfo=dt.UTC)
        days[(upload - START).days].append(event)
    return days


@pytest.fixture(scope="module", autouse=True)
def _plugins_installed() -> None:
    install_plugins()


@pytest.fixture(scope="module")
def generated() -> list[list[dict[str, Any]]]:
    return split_by_day(ExportSpec(start=START, hours=24 * DAYS, events=900, seed=15))


# --- reading back what each target stored ------------------------------------------------


def as_stored(kind: str, value: Any) -> Any:
    """An expected JSON value as SQL targets store it: times as naive UTC datetimes."""
    if value is None:
        return None
    if kind == "date-time":
        return dt.datetime.fromisoformat(value).astimezone(dt.UTC).replace(tzinfo=None)
    return value


def from_db(kind: str, value: Any) -> Any:
    """A stored value as a JSON value (numeric columns come back as Decimal, JSON as text)."""
    if isinstance(value, Decimal):
        return float(value) if kind == "number" else int(value)
    if kind in ("object", "array") and isinstance(value, str):
        return orjson.loads(value)
    return value


def assert_rows_match_export(rows: list[dict[str, Any]], export: Export, days: range) -> None:
    """Every event of these days once, every field equal to what the export says."""
    uuids = [row["uuid"] for row in rows]
    assert len(uuids) == len(set(uuids)), "an event was loaded twice"
    assert set(uuids) == export.uuids(days), "events missing or unexpected"
    for row in rows:
        expected = export.expected[row["uuid"]]
        for key, kind in KINDS.items():
            want = expected.get(key)
            if key == EXTRA_FIELD:
                kind = "object"
            got = from_db(kind, row.get(key))
            assert got == as_stored(kind, want), (row["uuid"], key, got, want)


def read_postgres(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as connection:
        return connection.execute("SELECT * FROM amplitude.events").fetchall()


def read_duckdb(path: Path) -> list[dict[str, Any]]:
    """Rows through the target's own duckdb (the main venv has none), as JSON lines."""
    script = (
        "import duckdb, json, sys\n"
        "c = duckdb.connect(sys.argv[1], read_only=True)\n"
        "cur = c.execute('SELECT * FROM amplitude.events')\n"
        "names = [d[0] for d in cur.description]\n"
        "for row in cur.fetchall():\n"
        "    print(json.dumps(dict(zip(names, row)), default=lambda v: v.isoformat()))\n"
    )
    done = subprocess.run(
        [str(DUCKDB_PYTHON), "-c", script, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    for row in rows:
        for key, kind in KINDS.items():
            if kind == "date-time" and row.get(key) is not None:
                row[key] = dt.datetime.fromisoformat(row[key])
    return rows


def read_jsonl(folder: Path) -> list[dict[str, Any]]:
    """Records as written; times compared as datetimes like the SQL targets' columns."""
    rows = []
    for path in sorted(folder.glob("events*.jsonl")):
        for line in path.read_bytes().splitlines():
            row = orjson.loads(line)
            for key, kind in KINDS.items():
                if kind == "date-time" and row.get(key) is not None:
                    row[key] = as_stored(kind, row[key])
            rows.append(row)
    return rows


# --- the runs ------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    settings: dict[str, str]
    read: Callable[[], list[dict[str, Any]]]


def emitted(result: subprocess.CompletedProcess[str]) -> int:
    """Events the tap read in that run (its closing "Done: N events" line)."""
    found = re.findall(r"Done: (\d+) events", result.stdout + result.stderr)
    return int(found[-1]) if found else 0


@pytest.fixture
def export(tmp_path: Path) -> Export:
    folder = tmp_path / "export"
    folder.mkdir()
    return Export(folder)


def run_three_times(
    tmp_path: Path, export: Export, target: Target, generated: list[list[dict[str, Any]]]
) -> None:
    export.write_day(0, [dict(e) for e in generated[0]])
    export.write_day(1, [dict(e) for e in generated[1]])
    settings = {
        "TAP_AMPLITUDE_EXPORT_PATH": str(export.folder),
        "TAP_AMPLITUDE_START_DATE": START.isoformat(),
        **target.settings,
    }
    project = MeltanoProject(workdir=tmp_path, environment="prod", settings=settings)

    full = project.run("run", "tap-amplitude", target.name, timeout=300)
    assert full.returncode == 0, full.stderr[-3000:]
    assert emitted(full) == len(export.uuids(range(2)))
    assert_rows_match_export(target.read(), export, range(2))

    export.write_day(2, [dict(e) for e in generated[2]])  # a later day's files land
    incremental = project.run("run", "tap-amplitude", target.name, timeout=300)
    assert incremental.returncode == 0, incremental.stderr[-3000:]
    assert emitted(incremental) == len(export.uuids(range(2, 3)))  # that day alone
    assert_rows_match_export(target.read(), export, range(3))

    again = project.run("run", "tap-amplitude", target.name, timeout=300)  # nothing new
    assert again.returncode == 0, again.stderr[-3000:]
    assert emitted(again) == 0
    assert_rows_match_export(target.read(), export, range(3))


def test_target_jsonl(
    tmp_path: Path, export: Export, generated: list[list[dict[str, Any]]]
) -> None:
    out = tmp_path / "jsonl"
    out.mkdir()
    target = Target(
        "target-jsonl", {"TARGET_JSONL_DESTINATION_PATH": str(out)}, lambda: read_jsonl(out)
    )
    run_three_times(tmp_path, export, target, generated)


def test_target_postgres(
    tmp_path: Path,
    export: Export,
    generated: list[list[dict[str, Any]]],
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.create_database()
    parts = urlsplit(url)
    settings = {
        "TARGET_POSTGRES_HOST": str(parts.hostname),
        "TARGET_POSTGRES_PORT": str(parts.port),
        "TARGET_POSTGRES_USER": str(parts.username),
        "TARGET_POSTGRES_PASSWORD": str(parts.password),
        "TARGET_POSTGRES_DATABASE": parts.path.lstrip("/"),
        "TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA": "amplitude",
    }
    run_three_times(
        tmp_path, export, Target("target-postgres", settings, lambda: read_postgres(url)), generated
    )
    with psycopg.connect(url, row_factory=dict_row) as connection:
        rows = connection.execute("SELECT * FROM amplitude.unreadable_lines").fetchall()
    assert [(row["line_base64"], row["line_text"]) for row in rows] == [
        (base64.b64encode(SET_ASIDE).decode(), None)  # NUL: PostgreSQL's text cannot hold it
    ]


def test_target_duckdb(
    tmp_path: Path, export: Export, generated: list[list[dict[str, Any]]]
) -> None:
    path = tmp_path / "warehouse.duckdb"
    settings = {
        "TARGET_DUCKDB_PATH": str(path),
        "TARGET_DUCKDB_DEFAULT_TARGET_SCHEMA": "amplitude",
    }
    run_three_times(
        tmp_path, export, Target("target-duckdb", settings, lambda: read_duckdb(path)), generated
    )
    # target-duckdb stores numbers as doubles (DOUBLE columns; JSON written from doubles): the
    # exact value as exported is recovered from the row's number_texts (issue 15).
    rows = read_duckdb(path)
    lat = [row for row in rows if row["location_lat"] == 47.1]
    prices = [
        row
        for row in rows
        if isinstance(row["event_properties"], str) and '"long"' in row["event_properties"]
    ]
    assert len(lat) == DAYS and len(prices) == DAYS  # planted once a day
    for row in lat:
        assert Decimal(exact_text(row, "/location_lat")) == Decimal("47.10")
        assert exact_text(row, "/location_lat") == "47.10"
    for row in prices:
        assert orjson.loads(row["event_properties"])["long"] == 12.345678901234567  # the double
        assert exact_text(row, "/event_properties/long") == "12.345678901234567890123"
        assert exact_text(row, "/event_properties/price") == "1.10"


def exact_text(row: dict[str, Any], pointer: str) -> str:
    """The exported text of the number at ``pointer``, from the row's number_texts."""
    extra = orjson.loads(row[EXTRA_FIELD])
    return str(extra["number_texts"][pointer])
