"""Settings a user can get wrong: each mistake is said in one line, and each run says at start
which settings are in force. Driven through the real `meltano run` where Meltano is involved
(environment variables, the conversion of values), and the tap's CLI for the bookmark rule."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from singer_plugin_common import settings_env
from tap_amplitude.settings_env import start_date_against_bookmark

from tests.conftest import TAP_DAY, TapRun, tap_config
from tests.meltano_harness import (
    AMPLITUDE_KEY,
    AMPLITUDE_SECRET,
    POSTHOG_KEY,
    REPO_ROOT,
    MeltanoProject,
    install_plugins,
    tap_settings,
    target_settings,
)
from tests.testbed.amplitude import AmplitudeStandIn
from tests.testbed.generator import ExportSpec, ExportStore
from tests.testbed.posthog import PostHogStandIn

START = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


@pytest.fixture
def meltano_project(tmp_path: Path) -> Iterator[MeltanoProject]:
    install_plugins()
    store = ExportStore.build(tmp_path / "export", ExportSpec(start=START, hours=6, events=300))
    with (
        AmplitudeStandIn(store, api_key=AMPLITUDE_KEY, secret_key=AMPLITUDE_SECRET) as amplitude,
        PostHogStandIn(api_key=POSTHOG_KEY) as posthog,
    ):
        settings = tap_settings(amplitude.url, START, START + dt.timedelta(hours=6))
        settings |= target_settings(posthog.url, tmp_path / "out")
        yield MeltanoProject(workdir=tmp_path, environment="prod", settings=settings)


@pytest.mark.e2e
def test_a_misspelt_variable_is_named_with_the_setting_meant_and_settings_in_force_are_logged(
    meltano_project: MeltanoProject,
) -> None:
    meltano_project.settings |= {
        "TARGET_POSTHOG_MAX_EVENT_PER_MINUTE": "6000",  # the typo of the issue
        "TAP_AMPLITUDE_WINDOWS_HOURS": "4",
        "TAP_AMPLITUDE_DATA_REGION": "EU",  # any case
    }
    result = meltano_project.run_job()
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert (
        "TARGET_POSTHOG_MAX_EVENT_PER_MINUTE names no setting of this plugin: did you mean "
        "TARGET_POSTHOG_MAX_EVENTS_PER_MINUTE (max_events_per_minute)?" in output
    )
    assert (
        "TAP_AMPLITUDE_WINDOWS_HOURS names no setting of this plugin: did you mean "
        "TAP_AMPLITUDE_WINDOW_HOURS (window_hours)?" in output
    )
    # Meltano shows every plugin line at "info" (its format drops the level): a warning says
    # what it is in its text; an info line does not.
    assert "target-posthog warning: TARGET_POSTHOG_MAX_EVENT_PER_MINUTE names no setting" in output
    assert "tap-amplitude warning: TAP_AMPLITUDE_WINDOWS_HOURS names no setting" in output
    assert "info:" not in output
    (tap_line,) = [
        line for line in output.splitlines() if "tap-amplitude settings in force" in line
    ]
    assert "(data_region eu)" in tap_line and "adaptive windows" in tap_line
    (target_line,) = [line for line in output.splitlines() if "posthog settings in force" in line]
    assert "speed limit none (no limit)" in target_line and "dry run off" in target_line
    for secret in (AMPLITUDE_KEY, AMPLITUDE_SECRET, POSTHOG_KEY):
        assert secret not in output


@pytest.mark.e2e
def test_a_date_that_is_not_iso_8601_and_an_unknown_region_fail_in_one_line_each(
    meltano_project: MeltanoProject,
) -> None:
    meltano_project.settings |= {
        "TAP_AMPLITUDE_START_DATE": "01/02/2025",  # Meltano used to make this 2 January
        "TAP_AMPLITUDE_END_DATE": "next tuesday",
        "TAP_AMPLITUDE_DATA_REGION": "europe",
    }
    result = meltano_project.run_job()
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if "tap-amplitude cannot start:" in line]
    assert len(lines) == 3, output[-3000:]
    assert "start_date '01/02/2025' is not an ISO 8601 date-time" in lines[0] + lines[1] + lines[2]
    assert any("end_date 'next tuesday' is not an ISO 8601 date-time" in line for line in lines)
    assert any("data_region 'europe' is not one of: eu, us (any case)" in line for line in lines)


@pytest.mark.e2e
def test_numbers_booleans_and_choices_set_as_text_are_read_strictly_by_the_plugins(
    meltano_project: MeltanoProject,
) -> None:
    """Meltano 4.4's own kinds turned "ture" into false silently and stopped with a traceback
    on "6k" or "Keep"; declared as text, the plugins read them (any case) or name them."""
    # One plugin's bad text at a time: with both failing, Meltano ends the job when the first
    # exits and may drop the other's lines unread (seen once under load).
    meltano_project.settings |= {
        "TARGET_POSTHOG_HISTORICAL_MIGRATION": "ture",
        "TARGET_POSTHOG_MAX_EVENTS_PER_MINUTE": "6k",
    }
    result = meltano_project.run_job()
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "Traceback" not in output
    assert "'ture' is not of type 'boolean'" in output
    assert "'6k' is not of type 'integer'" in output
    meltano_project.settings |= {
        "TARGET_POSTHOG_HISTORICAL_MIGRATION": "true",
        "TARGET_POSTHOG_MAX_EVENTS_PER_MINUTE": "600000",
        "TAP_AMPLITUDE_TARGET_WINDOW_MB": "big",
    }
    result = meltano_project.run_job()
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "Traceback" not in output
    assert "'big' is not of type 'integer'" in output
    meltano_project.settings |= {
        "TARGET_POSTHOG_HISTORICAL_MIGRATION": "False",
        "TARGET_POSTHOG_MAX_EVENTS_PER_MINUTE": " 600000 ",
        "TARGET_POSTHOG_EXISTING_PROPERTIES": "Keep",
        "TAP_AMPLITUDE_TARGET_WINDOW_MB": "64",
        "TAP_AMPLITUDE_RETRY_BASE_SECONDS": "0.5",
    }
    result = meltano_project.run_job()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    (target_line,) = [line for line in output.splitlines() if "posthog settings in force" in line]
    assert "historical_migration False;" in target_line
    assert "speed limit 600000 events/min;" in target_line
    assert "existing_properties keep;" in target_line
    (tap_line,) = [
        line for line in output.splitlines() if "tap-amplitude settings in force" in line
    ]
    assert "adaptive windows aiming at 64 MB" in tap_line


def test_setting_text_is_turned_into_its_value_only_when_it_reads_exactly() -> None:
    properties = {
        "flag": {"type": ["boolean", "null"]},
        "count": {"type": ["integer"]},
        "seconds": {"type": "number"},
        "mode": {"type": ["string"], "enum": ["overwrite", "keep"]},
        "name": {"type": "string"},
    }
    cases = [
        ("flag", "TRUE", True),
        ("flag", " off ", False),
        ("flag", "ture", "ture"),  # left for the schema check to name
        ("flag", True, True),
        ("count", "+12", 12),
        ("count", "6k", "6k"),
        ("count", "1.0", "1.0"),
        ("seconds", "0.5", 0.5),
        ("seconds", "1e3", 1000.0),
        ("seconds", "fast", "fast"),
        ("mode", "Keep", "keep"),
        ("mode", "kept", "kept"),
        ("name", "42", "42"),  # a string setting stays text
    ]
    for name, given, expected in cases:
        config = {name: given}
        settings_env.values_from_text(config, properties)
        assert config[name] == expected, (name, given)
        assert type(config[name]) is type(expected), (name, given)


@pytest.mark.parametrize(
    ("bookmark_hours", "says"),
    [
        (24, "resuming from the stored bookmark 2024-03-03T00:00:00+00:00 (start_date"),
        (-24, "start_date wins, the hours between are not read"),
    ],
)
def test_a_start_date_that_differs_from_the_bookmark_says_which_wins(
    run_tap: Callable[..., TapRun], amplitude_api: AmplitudeStandIn, bookmark_hours: int, says: str
) -> None:
    start = TAP_DAY + dt.timedelta(hours=24)
    bookmark = (start + dt.timedelta(hours=bookmark_hours)).isoformat()
    state = {
        "bookmarks": {
            "events": {"replication_key": "server_upload_time", "replication_key_value": bookmark}
        }
    }
    config = tap_config(
        amplitude_api,
        start_date=start.isoformat(),
        end_date=(TAP_DAY + dt.timedelta(hours=72)).isoformat(),
    )
    run = run_tap(config, state)
    assert run.returncode == 0, run.stderr
    (line,) = [line for line in run.stderr.splitlines() if says in line]
    # A resume is routine (info); a start_date past the bookmark skips hours (warning).
    assert ("WARNING" in line) is (bookmark_hours < 0), line
    first = min(r["server_upload_time"] for r in run.records)
    assert first >= max(start.isoformat(), bookmark)


def test_the_start_over_hint_names_how_to_find_this_jobs_state_id() -> None:
    """Meltano does not pass the state id; the hint names the command that lists it, with the
    environment and extractor Meltano does pass (the old hint printed a placeholder id)."""
    start = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    environ = {"MELTANO_ENVIRONMENT": "prod", "MELTANO_EXTRACTOR_NAME": "tap-amplitude--eu"}
    line = start_date_against_bookmark(start, "2024-03-02T05:00:00+00:00", environ)
    assert line.endswith(
        "To start over from start_date, clear the job's state: `meltano --environment=prod "
        "state list --pattern 'prod:tap-amplitude--eu-to-*'` names it, then `meltano "
        "--environment=prod state clear --force <that state id>`"
    )
    assert "<environment>" in start_date_against_bookmark(start, "2024-03-02T05:00:00+00:00", {})


@pytest.mark.e2e
def test_a_filled_dotenv_changes_nothing_in_the_tests_meltano_runs(
    meltano_project: MeltanoProject,
) -> None:
    """README step 2 fills `.env` for the real migration; the test suite must not read it."""
    dotenv = REPO_ROOT / ".env"
    if dotenv.exists():
        pytest.skip("a real .env is in the repository; the test does not touch it")
    # Values none of the tests set themselves, each of which would change the run if read.
    dotenv.write_text(
        "TAP_AMPLITUDE_DATA_REGION=mars\n"
        f"TARGET_POSTHOG_DRY_RUN_PATH={meltano_project.workdir / 'leaked.jsonl'}\n"
        "TARGET_POSTHOG_MAX_EVENTS_PER_MINUTE=1\n"
    )
    try:
        result = meltano_project.run_job()
    finally:
        dotenv.unlink()
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "speed limit none (no limit)" in result.stdout + result.stderr
    assert not (meltano_project.workdir / "leaked.jsonl").exists()


@pytest.mark.parametrize("role", ["tap", "target"])
def test_meltanos_config_files_go_once_read_and_killed_runs_leftovers_with_them(
    tmp_path: Path, role: str
) -> None:
    """A kill after the plugins started left Meltano's config file (keys in clear) for good:
    the next run removes leftovers older than STALE_CONFIG_SECONDS, never a parallel job's
    fresh one, nor a config file a user passes by hand."""
    run_folder = tmp_path / ".meltano" / "run"

    def name(kind: str, digit: str) -> str:
        return f"{kind}.{digit * 8}-{digit * 4}-{digit * 4}-{digit * 4}-{digit * 12}.config.json"

    own = run_folder / f"{role}-x" / name(role, "1")
    killed = run_folder / "tap-amplitude" / name("tap", "2")
    other_job = run_folder / "target-posthog" / name("target", "3")
    by_hand = run_folder / "target-posthog" / "my-settings.config.json"
    for path in (own, killed, other_job, by_hand):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('{"api_key": "secret"}')
    old = time.time() - settings_env.STALE_CONFIG_SECONDS - 60
    os.utime(killed, (old, old))
    os.utime(by_hand, (old, old))
    assert settings_env.remove_meltano_config_file(["x", "--config", str(own)], role) == 1
    assert not own.exists() and not killed.exists()
    assert other_job.exists() and by_hand.exists()
    assert run_folder.stat().st_mode & 0o077 == 0
    # A config file outside .meltano/run (the user's own) is never touched.
    mine = tmp_path / name(role, "4")
    mine.write_text("{}")
    assert settings_env.remove_meltano_config_file(["--config", str(mine)], role) == 0
    assert mine.exists()
