"""The verification's test harness: one export, both stand-ins, the drill pipeline that
migrates it, and `target-posthog-verify` run as a user runs it (tests/test_verify*.py)."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import orjson
from click.testing import CliRunner
from target_posthog import verify_cli

from tests.pipeline_harness import (
    AMPLITUDE_KEY,
    AMPLITUDE_SECRET,
    POSTHOG_KEY,
    Pipeline,
    drill_tap_config,
    drill_target_config,
)
from tests.testbed.amplitude import AmplitudeStandIn
from tests.testbed.dashboard import NOT_IN_CHARTS
from tests.testbed.events import ExportSpec
from tests.testbed.posthog import PostHogStandIn
from tests.testbed.store import ExportStore

VERIFY = Path(sys.executable).parent / "target-posthog-verify"
PERSONAL_KEY = "phx_verify_secret_77c1e0_never_print"
PROJECT_ID = 31337
HOURS = 24
OUTSIDE = "event time outside"  # the row of events dated outside the report's periods


@dataclass
class Report:
    returncode: int
    stdout: str
    stderr: str
    rows: list[dict[str, str]]

    def row(self, period: str) -> dict[str, str]:
        return next(row for row in self.rows if row["period"] == period)

    def periods(self) -> list[dict[str, str]]:
        """The rows of the report's periods (not the outside row, not the untimed rows)."""
        return [row for row in self.rows if row["period"][:1].isdigit()]

    def outside(self) -> dict[str, str] | None:
        return next((row for row in self.rows if row["period"].startswith(OUTSIDE)), None)

    def not_ok(self) -> dict[str, str]:
        return {row["period"]: row["status"] for row in self.rows if row["status"] != "OK"}

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if "cannot verify" in line]


class Migration:
    """One export, both stand-ins, the pipeline that moves it, and the verification."""

    def __init__(self, workdir: Path, store: ExportStore, hours: int = HOURS) -> None:
        self.workdir = workdir
        self.store = store
        self.amplitude = AmplitudeStandIn(store, AMPLITUDE_KEY, AMPLITUDE_SECRET).start()
        self.posthog = PostHogStandIn(
            api_key=POSTHOG_KEY, personal_api_key=PERSONAL_KEY, project_id=PROJECT_ID
        ).start()
        self.pipeline = Pipeline(
            workdir / "run",
            drill_tap_config(self.amplitude, hours),
            drill_target_config(workdir / "run", self.posthog),
        )
        self.state: dict[str, Any] | None = None

    def run(self, **tap_overrides: Any) -> None:
        self.pipeline.tap_config.update(tap_overrides)
        result = self.pipeline.run(self.state)
        assert result.ok, result.describe()
        self.state = result.last_state

    def verify(
        self,
        *args: str,
        cwd: Path | None = None,
        output: str = "report.csv",
        now: datetime | None = None,
        **settings: Any,
    ) -> Report:
        """The CLI as a user runs it; with `now`, in this process, judging at that time."""
        config = {
            **self.pipeline.target_config,
            # As Meltano passes them (meltano.yml: $TAP_AMPLITUDE_START_DATE, _END_DATE).
            "amplitude_start_date": self.pipeline.tap_config.get("start_date"),
            "amplitude_end_date": self.pipeline.tap_config.get("end_date"),
            "personal_api_key": PERSONAL_KEY,
            "project_id": str(PROJECT_ID),
            "app_host": self.posthog.url,
            "amplitude_api_key": AMPLITUDE_KEY,
            "amplitude_secret_key": AMPLITUDE_SECRET,
            "amplitude_api_url": self.amplitude.url,
            **settings,
        }
        path = self.workdir / "verify-config.json"
        path.write_bytes(orjson.dumps(config))
        written = self.workdir / output
        written.unlink(missing_ok=True)
        arguments = ["--config", str(path), "--output", str(written), *args]
        if now is None:
            done = subprocess.run(
                [str(VERIFY), *arguments], capture_output=True, text=True, timeout=120, cwd=cwd
            )
        else:
            with mock.patch.object(verify_cli, "utc_now", lambda: now):
                result = CliRunner().invoke(verify_cli.cli, arguments)
            assert not isinstance(result.exception, AssertionError | TypeError), result.exception
            done = subprocess.CompletedProcess([], result.exit_code, result.stdout, result.stderr)
        rows: list[dict[str, str]] = []
        if written.suffix == ".json" and written.exists():  # the same table, values typed
            table = orjson.loads(written.read_bytes())
            rows = [{k: "" if v is None else str(v) for k, v in row.items()} for row in table]
        elif written.exists():
            rows = list(csv.DictReader(written.open()))
        for secret in (PERSONAL_KEY, AMPLITUDE_KEY, AMPLITUDE_SECRET, POSTHOG_KEY):
            assert secret not in done.stdout + done.stderr
        return Report(done.returncode, done.stdout, done.stderr, rows)

    def stop(self) -> None:
        self.amplitude.stop()
        self.posthog.stop()


def event_hours(events: list[dict[str, Any]]) -> Counter[str]:
    return Counter(f"{event['timestamp'][:13]}:00Z" for event in events)


def chart_days(store: ExportStore) -> Counter[str]:
    """What Amplitude's charts count per UTC day (identify rows are not chart events)."""
    return Counter(
        record["event_time"][:10]
        for record in store.iter_events()
        if record.get("event_type") not in NOT_IN_CHARTS
    )


PARALLEL_NOW = datetime(2024, 6, 5, 12, tzinfo=UTC)  # a fixed clock: never the time of day


def unread_by_hour(
    store: ExportStore, low: datetime, high: datetime, before: datetime | None = None
) -> dict[str, int]:
    """Chart events (what Amplitude counts) uploaded in [low, high), by event hour label; only
    event hours before `before` if given."""
    found: Counter[str] = Counter()
    for record in store.iter_events():
        uploaded = datetime.fromisoformat(record["server_upload_time"]).replace(tzinfo=UTC)
        hour = datetime.fromisoformat(record["event_time"]).replace(
            tzinfo=UTC, minute=0, second=0, microsecond=0
        )
        if record.get("event_type") in NOT_IN_CHARTS or not low <= uploaded < high:
            continue
        if before is None or hour < before:
            found[f"{hour:%Y-%m-%dT%H:00Z}"] += 1
    return dict(found)


def chart_days_of(records: list[dict[str, Any]]) -> Counter[str]:
    return Counter(
        r["event_time"][:10] for r in records if r.get("event_type") not in NOT_IN_CHARTS
    )


def backdated(
    store: ExportStore, spec: ExportSpec, scratch: Path, back: timedelta
) -> list[dict[str, Any]]:
    """Add `spec`'s events to `store` with event times moved `back` (uploaded late)."""
    generated = ExportStore.build(scratch, spec)
    records = []
    for record in generated.iter_events():
        for name in ("event_time", "client_event_time"):
            if isinstance(record.get(name), str):
                moment = datetime.fromisoformat(record[name]).replace(tzinfo=UTC) - back
                record[name] = moment.strftime("%Y-%m-%d %H:%M:%S.%f")
        records.append(record)
    store.add_records(records)
    return records
