"""End to end: `meltano run` migrates, then `meltano invoke target-posthog:verify` proves it.

The verification gets its settings as a user's project gives them: target-posthog's settings
from Meltano, the Amplitude keys and region through tap-amplitude's variables (meltano.yml).
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from target_posthog.profiles import UPDATE_MARKER

from tests.meltano_harness import (
    AMPLITUDE_KEY,
    AMPLITUDE_SECRET,
    POSTHOG_KEY,
    MeltanoProject,
    install_plugins,
    tap_settings,
    target_settings,
)
from tests.testbed.amplitude import AmplitudeStandIn
from tests.testbed.generator import ExportSpec, ExportStore
from tests.testbed.posthog import PostHogStandIn

pytestmark = pytest.mark.e2e

START = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
PERSONAL_KEY = "phx_e2e_verify_4c2d9a_never_print"
PROJECT_ID = 777


@pytest.fixture(scope="module", autouse=True)
def _plugins_installed() -> None:
    install_plugins()


@pytest.fixture
def stand_ins(tmp_path: Path) -> Iterator[tuple[ExportStore, AmplitudeStandIn, PostHogStandIn]]:
    store = ExportStore.build(tmp_path / "export", ExportSpec(start=START, hours=48, events=900))
    with (
        AmplitudeStandIn(store, api_key=AMPLITUDE_KEY, secret_key=AMPLITUDE_SECRET) as amplitude,
        PostHogStandIn(
            api_key=POSTHOG_KEY, personal_api_key=PERSONAL_KEY, project_id=PROJECT_ID
        ) as posthog,
    ):
        amplitude.dashboard.time_zone = "America/New_York"
        yield store, amplitude, posthog


def test_meltano_invoke_verify_proves_the_migration_then_names_a_loss(
    tmp_path: Path, stand_ins: tuple[ExportStore, AmplitudeStandIn, PostHogStandIn]
) -> None:
    _, amplitude, posthog = stand_ins
    settings = tap_settings(amplitude.url, START, START + dt.timedelta(hours=48))
    settings |= target_settings(posthog.url, tmp_path / "out")
    settings |= {
        "TARGET_POSTHOG_PERSONAL_API_KEY": PERSONAL_KEY,
        "TARGET_POSTHOG_PROJECT_ID": str(PROJECT_ID),
        "TARGET_POSTHOG_APP_HOST": posthog.url,
        "TARGET_POSTHOG_AMPLITUDE_TIME_ZONE": "America/New_York",
    }
    project = MeltanoProject(workdir=tmp_path, environment="prod", settings=settings)
    migrated = project.run("run", "tap-amplitude", "target-posthog")
    assert migrated.returncode == 0, migrated.stderr

    verified = project.run("invoke", "target-posthog:verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = tmp_path / "out" / "verification-day.csv"
    rows = list(csv.DictReader(report.open()))
    outside = [row for row in rows if row["period"].startswith("event time outside")]
    rows = [row for row in rows if row not in outside]  # late uploads of older events
    assert all(row["status"] == "OK" and row["amplitude"] == "" for row in outside)
    periods = [row["period"] for row in rows]
    assert {"2024-03-01", "2024-03-02"} <= set(periods)
    assert all(row["status"] == "OK" for row in rows), rows
    assert all(row["amplitude"] == str(int(row["read"]) - int(row["person_group_updates"]))
               for row in rows)  # fmt: skip
    assert "2024-03-01" in verified.stdout and "OK" in verified.stdout

    gone = posthog.remove_events(
        lambda event: (
            event["timestamp"].startswith("2024-03-02T1")
            and UPDATE_MARKER not in event["properties"]
        )  # not export events: not counted
    )
    assert gone
    alarmed = project.run("invoke", "target-posthog:verify", "--settle-hours", "0")
    assert alarmed.returncode == 1, alarmed.stdout + alarmed.stderr
    statuses = {row["period"]: row["status"] for row in csv.DictReader(report.open())}
    assert statuses.pop("2024-03-02") == f"missing in PostHog ({gone})"
    assert set(statuses.values()) == {"OK"}
    for output in (migrated, verified, alarmed):
        for secret in (PERSONAL_KEY, AMPLITUDE_KEY, AMPLITUDE_SECRET, POSTHOG_KEY):
            assert secret not in output.stdout + output.stderr
    # Nor on disk: Meltano's state, the registry and its ledger, the report, the dead letters.
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any(path.name == "verification-day.csv" for path in written)
    for path in written:
        content = path.read_bytes()
        for secret in (PERSONAL_KEY, AMPLITUDE_KEY, AMPLITUDE_SECRET, POSTHOG_KEY):
            assert secret.encode() not in content, path
