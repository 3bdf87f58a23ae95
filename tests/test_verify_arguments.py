"""`target-posthog-verify`'s arguments and settings as a user types them: each one it cannot use
is one line and exit 2, and none is changed silently (a time within a period is widened to the
whole period, and that is said)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from target_posthog import verify_cli

from tests.verify_harness import Migration


@pytest.mark.parametrize(
    ("arguments", "line"),
    [
        (("--start", "2024-13-01"), "--start '2024-13-01' is not a UTC date (YYYY-MM-DD) or hour "
                                    "(YYYY-MM-DDTHH:00)"),
        (("--period", "week"), "Invalid value for '--period': 'week' is not one of 'day', 'hour'."),
        (("--bogus",), "No such option '--bogus'."),
        (("--settle-hours", "-5"), "Invalid value for '--settle-hours': -5.0 is not in the range "
                                   "0<=x<=8784."),
        (("--settle-hours", "nan"), "Invalid value for '--settle-hours': nan is not a number of "
                                    "hours"),  # was a traceback, as were inf and 1e300
        (("--settle-hours", "1e300"), "Invalid value for '--settle-hours': 1e+300 is not in the "
                                      "range 0<=x<=8784."),
        # Each of these was taken and changed silently (or a traceback, or a line naming an
        # --end the user never gave).
        (("--start", "2024-05-01T10:00", "--end", "2024-05-01T05:00"),
         "--end 2024-05-01T05:00 is not after --start 2024-05-01T10:00"),  # was widened
        (("--start", "2024-05-01", "--end", "2024-05-01"),
         "--end 2024-05-01 is not after --start 2024-05-01"),
        (("--period", "hour", "--start", "2024-05-01T05:00+02:00"),
         "--start '2024-05-01T05:00+02:00' is not in UTC (offset +02:00): periods are UTC, give "
         "2024-05-01T03:00"),
        (("--start", ""), "--start '' is not a UTC date (YYYY-MM-DD) or hour (YYYY-MM-DDTHH:00)"),
        (("--end", "9999-12-31T05:00"),
         "--end 9999-12-31T05:00 is past what the report can hold: it ends by 9999-12-30"),
        (("--start", "2099-01-01"), "--start 2099-01-01 is not before the report's default end "
                                    "2024-05-02 (end_date, or now): give --end too"),
        (("--end", "2020-01-01"), "--end 2020-01-01 is not after the report's default start "
                                  "2024-05-01 (start_date, or the first upload hour read): give "
                                  "--start too"),
    ],
)  # fmt: skip
def test_a_usage_error_is_one_line_exit_2(
    migrated: Migration, arguments: tuple[str, ...], line: str
) -> None:
    report = migrated.verify(*arguments)
    assert (report.returncode, report.stderr) == (2, f"target-posthog-verify: {line}\n")
    assert report.stdout == ""  # was click's four-line usage block


def test_a_setting_variable_that_is_no_number_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """singer-sdk's int() of TARGET_POSTHOG_MAX_RETRIES=abc was a ValueError traceback."""
    for name in ("PERSONAL_API_KEY", "PROJECT_ID", "AMPLITUDE_API_KEY", "AMPLITUDE_SECRET_KEY"):
        monkeypatch.setenv(f"TARGET_POSTHOG_{name}", f"set-{name.lower()}")
    monkeypatch.setenv("TARGET_POSTHOG_MAX_RETRIES", "abc")
    result = CliRunner().invoke(verify_cli.cli, [])
    assert (result.exit_code, result.stderr) == (
        2,
        "target-posthog-verify: cannot verify: max_retries (TARGET_POSTHOG_MAX_RETRIES) 'abc' "
        "is not a whole number of at least 0\n",
    )


def test_hours_within_one_day_are_widened_to_that_day_and_said(migrated: Migration) -> None:
    report = migrated.verify("--start", "2024-05-01T05:00", "--end", "2024-05-01T07:00")
    assert report.returncode == 0, report.stdout + report.stderr  # was "--end must be after"
    assert [row["period"] for row in report.periods()] == ["2024-05-01"]
    assert (
        "target-posthog-verify: --start/--end widened to whole UTC days: 2024-05-01 .. "
        "2024-05-02 (exclusive); --period hour compares hours"
    ) in report.stderr.splitlines()


def test_a_time_within_an_hour_is_widened_to_that_hour_and_said(migrated: Migration) -> None:
    report = migrated.verify("--period", "hour", "--start", "2024-05-01T05:30", "--end",
                             "2024-05-01T06:45:10")  # fmt: skip
    assert report.returncode == 0, report.stdout + report.stderr
    assert [row["period"] for row in report.periods()] == [
        "2024-05-01T05:00Z", "2024-05-01T06:00Z"]  # fmt: skip
    assert (  # was silent
        "target-posthog-verify: --start/--end widened to whole UTC hours: 2024-05-01T05:00 .. "
        "2024-05-01T07:00 (exclusive)"
    ) in report.stderr.splitlines()


def test_year_1_and_a_config_that_is_no_object_are_one_line_or_counted(
    migrated: Migration, tmp_path: Path
) -> None:
    """Year 1 in an Amplitude project west or east of UTC was an OverflowError traceback; a
    config file holding a JSON list was a TypeError traceback."""
    for zone in ("Etc/GMT+8", "Etc/GMT-9"):  # UTC-08:00, UTC+09:00
        report = migrated.verify("--start", "0001-01-01", "--end", "0001-01-03",
                                 amplitude_time_zone=zone)  # fmt: skip
        assert report.returncode == 0, report.stdout + report.stderr
        assert [row["period"] for row in report.periods()] == ["0001-01-01", "0001-01-02"]
    # Los Angeles in year 1 is its local mean time, not whole hours off UTC: refused so.
    report = migrated.verify("--start", "0001-01-01", "--end", "0001-01-03",
                             amplitude_time_zone="America/Los_Angeles")  # fmt: skip
    assert report.returncode == 2
    assert report.error_lines() == [
        "target-posthog-verify: cannot verify: the Amplitude project's time zone "
        "America/Los_Angeles is UTC-07:53 on 0001-01-01: its hourly buckets do not line up "
        "with UTC hours, so they cannot be compared hour by hour with the migration"
    ]
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    result = CliRunner().invoke(verify_cli.cli, ["--config", str(listed)])
    assert (result.exit_code, result.stderr) == (
        2, f"target-posthog-verify: cannot verify: the config file {listed} is not a JSON "
        "object of settings\n")  # fmt: skip


def test_help_says_where_the_report_goes_and_where_it_starts() -> None:
    result = CliRunner().invoke(verify_cli.cli, ["--help"], terminal_width=200)
    text = " ".join(result.output.split())
    assert "verification-<period>.csv beside the dead-letter file" in text  # not the registry
    assert "default: tap-amplitude's start_date, or the first upload hour read if earlier" in text
