"""`target-posthog-verify`: did PostHog get every event Amplitude counts? Per day or hour.

    meltano --environment=prod invoke target-posthog:verify [--period hour] [--start ...]

reads target-posthog's settings (Meltano passes them as TARGET_POSTHOG_* variables; `--config
FILE` works too), asks Amplitude's Dashboard REST API and PostHog's query API for their counts
(a few wide queries), reads the migration's ledger from the registry, prints the table and
writes it as CSV (or JSON for an `--output` ending in .json).

Exit codes: 0 every difference is explained (dead letters, not read yet, not visible yet);
1 events are missing in PostHog or a difference is unexplained; 2 the verification could not
run (settings, keys, limits, an `--output` it cannot write), said in one line.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import os
import sys
from pathlib import Path
from typing import Any

import click
import orjson
import requests
from singer_sdk.configuration._dict_config import parse_environment_config

from target_posthog.client import RetryPolicy
from target_posthog.counts import (
    AMPLITUDE_URLS,
    AmplitudeCounts,
    CountingError,
    PostHogCounts,
    app_host_for,
    day_text,
    moved,
)
from target_posthog.ledger_view import LedgerFigures, read_ledger
from target_posthog.setaside import set_aside_paths
from target_posthog.verify import compare, hourly_days
from target_posthog.verify_budget import plan_queries
from target_posthog.verify_range import check_options, moment_option, report_range, setting_time
from target_posthog.verify_rows import COLUMNS, DAY, Plan, Row
from target_posthog.zone_hint import chart_hours, zone_hint, zone_shift

SECRETS = ("personal_api_key", "amplitude_api_key", "amplitude_secret_key", "api_key")
ZONE_WINDOW_DAYS = 7  # the hours one Amplitude query gives (counting-apis.md)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
REQUIRED = ("personal_api_key", "project_id", "amplitude_api_key", "amplitude_secret_key")


def load_config(sources: tuple[str, ...]) -> dict[str, Any]:
    """Settings from JSON files and/or `ENV` (TARGET_POSTHOG_* variables), later ones winning."""
    from target_posthog.target import TargetPostHog  # the settings' one definition

    config: dict[str, Any] = {}
    for source in sources or ("ENV",):
        if source == "ENV":
            # Never a .env of its own (singer-sdk would find one and let it override the
            # environment): Meltano has already applied .env, or the --env-file given instead.
            try:
                config.update(
                    parse_environment_config(
                        TargetPostHog.config_jsonschema, "TARGET_POSTHOG_", dotenv_path=os.devnull
                    )
                )
            except ValueError:  # singer-sdk's int() of an integer setting's variable
                properties = TargetPostHog.config_jsonschema["properties"]
                bad = next(
                    name
                    for name, schema in properties.items()
                    if "integer" in schema["type"] and not _is_number(_env(name), whole=True)
                    and f"TARGET_POSTHOG_{name.upper()}" in os.environ
                )  # fmt: skip
                raise CountingError(_not_a_number(bad, _env(bad))) from None
            continue
        try:
            settings = orjson.loads(Path(source).read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise CountingError(f"cannot read the config file {source} ({exc})") from None
        if not isinstance(settings, dict):
            raise CountingError(f"the config file {source} is not a JSON object of settings")
        config.update(settings)
    defaults = {
        name: schema["default"]
        for name, schema in TargetPostHog.config_jsonschema["properties"].items()
        if "default" in schema
    }
    # A blank value (only spaces) is no value: it got past this check, then Meltano's redaction
    # of "secrets" made of spaces garbled the one-line error.
    config = {
        **defaults,
        **{
            k: v
            for k, v in config.items()
            if not (v is None or (isinstance(v, str) and not v.strip()))
        },
    }
    missing = [name for name in REQUIRED if not config.get(name)]
    if missing:
        names = ", ".join(f"{name} ({_variable(name)})" for name in missing)
        raise CountingError(f"the verification needs these target-posthog settings: {names}")
    for name in NUMBERS:  # a variable's text, or a config file's value of any JSON type
        schema = TargetPostHog.config_jsonschema["properties"][name]
        whole = "integer" in schema["type"]
        value = config[name]
        if not _is_number(value, whole) or not (
            float(value) > schema.get("exclusiveMinimum", -math.inf)
            and float(value) >= schema.get("minimum", -math.inf)
        ):
            raise CountingError(_not_a_number(name, value, schema))
        config[name] = int(float(value)) if whole else float(value)
    return config


# The settings of numbers the verification uses (the retries and timeout of its queries).
NUMBERS = ("max_retries", "retry_base_seconds", "request_timeout")


def _env(name: str) -> str:
    return os.environ.get(f"TARGET_POSTHOG_{name.upper()}", "")


def _is_number(value: object, whole: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return False
    try:
        number = float(value)
    except ValueError:
        return False
    return math.isfinite(number) and (not whole or number == int(number))


def _not_a_number(name: str, value: object, schema: dict[str, Any] | None = None) -> str:
    from target_posthog.target import TargetPostHog

    schema = schema or TargetPostHog.config_jsonschema["properties"][name]
    kind = "a whole number" if "integer" in schema["type"] else "a number"
    if "exclusiveMinimum" in schema:
        kind += f" above {schema['exclusiveMinimum']}"
    elif "minimum" in schema:
        kind += f" of at least {schema['minimum']}"
    return f"{name} ({_variable(name)}) {value!r} is not {kind}"


def _variable(name: str) -> str:
    """The variable a user sets for a setting: meltano.yml gives target-posthog the tap's
    Amplitude settings from TAP_AMPLITUDE_* (amplitude_api_key <- $TAP_AMPLITUDE_API_KEY)."""
    if name.startswith("amplitude_"):
        return f"TAP_AMPLITUDE_{name.removeprefix('amplitude_').upper()}"
    return f"TARGET_POSTHOG_{name.upper()}"


def amplitude_url(config: dict[str, Any]) -> str:
    """The Dashboard REST API's base URL for `amplitude_data_region` (us or eu, any case)."""
    region = str(config.get("amplitude_data_region") or "us")
    try:
        return AMPLITUDE_URLS[region.strip().lower()]
    except KeyError:
        raise CountingError(
            f"amplitude_data_region {region!r} is neither us nor eu (tap-amplitude's data_region)"
        ) from None


def redact(text: str, config: dict[str, Any]) -> str:
    for name in SECRETS:
        value = config.get(name)
        if isinstance(value, str) and value:
            text = text.replace(value, f"[{name}]")
    return text


def utc_now() -> dt.datetime:
    """The time the verification judges at (one reading per run)."""
    return dt.datetime.now(dt.UTC)


def verify(config: dict[str, Any], options: dict[str, Any], say: Any) -> tuple[list[Row], Path]:
    """Run the whole verification; the rows and where they were written."""
    by_day = options["period"] == "day"
    ledger = read_ledger(str(config["alias_registry"]))
    now = utc_now()
    start, end, start_date = report_range(config, options, ledger, now, say)
    # Beside the dead-letter file (the registry may be a PostgreSQL database).
    folder = Path(config["dead_letter_path"]).parent
    output = options["output"] or folder / f"verification-{options['period']}.csv"
    _check_writable(output)  # before any query: a typo must not cost the APIs' hourly budget
    retry = RetryPolicy(config["max_retries"], config["retry_base_seconds"])
    timeout = config["request_timeout"]

    amplitude = AmplitudeCounts(
        base_url=config.get("amplitude_api_url") or amplitude_url(config),
        api_key=config["amplitude_api_key"],
        secret_key=config["amplitude_secret_key"],
        time_zone=config.get("amplitude_time_zone") or "UTC",
        timeout=timeout,
        retry=retry,
        say=say,
    )
    posthog = PostHogCounts(
        app_host=config.get("app_host") or app_host_for(config["host"]),
        personal_api_key=config["personal_api_key"],
        project_id=str(config["project_id"]),
        timeout=timeout,
        retry=retry,
        say=say,
    )
    dead_letters = Path(config["dead_letter_path"])
    plan = Plan(
        start, end, by_day, now,
        dt.timedelta(hours=options["settle_hours"]), str(dead_letters),
        str(set_aside_paths(dead_letters)[0]), start_date,
        setting_time(config, "amplitude_end_date"),
    )  # fmt: skip
    try:
        # The days within which the range starts or ends are judged by hour (one more query
        # each, a day of hourly buckets): as in an hourly report.
        split = hourly_days(plan, ledger)
        plan_queries(amplitude, posthog, start, end, by_day=by_day, hourly_days=len(split))
        zone, host = amplitude.zone.key, posthog.app_host
        say(
            f"counting {day_text(start)} {start:%H:%M} .. {day_text(end)} {end:%H:%M} UTC "
            "(exclusive) in "
            f"Amplitude (time zone {zone}) and PostHog ({host})"
        )
        amplitude_counts = amplitude.counts(start, end, by_day=by_day)
        posthog_counts = posthog.counts(start, end)
        # PostHog keeps no event before 1970 from this target, nor one a day past its run.
        outside = posthog.total(EPOCH, start) + posthog.total(end, max(end, now + 2 * DAY))
        hours: dict[dt.datetime, int] = {}
        for day in split:
            hours.update(amplitude.counts(day, day + DAY, by_day=False))
        rows = compare(plan, ledger, amplitude_counts, posthog_counts, outside, hours)
        if any(row.unexplained for row in rows):
            _say_if_zone_is_off(amplitude, ledger, rows, plan, amplitude_counts, say)
        retried = amplitude.retries + posthog.retries
        again = f"; {retried} retried (429, 5xx, timeouts)" if retried else ""
        say(
            f"{amplitude.requests_sent} Amplitude queries, {posthog.requests_sent} PostHog "
            f"queries{again}"
        )
    finally:
        amplitude.close()
        posthog.close()
    try:
        write_report(rows, output)
    except OSError as exc:
        raise CountingError(_unwritable(output, exc.strerror or str(exc))) from None
    return rows, output


def _unwritable(path: Path, cause: str) -> str:
    return f"the report cannot be written to {path} ({cause}); choose --output"


def _check_writable(path: Path) -> None:
    """CountingError (one line) unless `path` can be written: opened for appending, so an
    existing report is left as it is, and removed again if this made it."""
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab"):
            pass
    except FileExistsError:  # mkdir: a file stands where a folder must be
        blocker = next(parent for parent in path.parents if parent.exists())
        raise CountingError(_unwritable(path, f"{blocker} is a file, not a folder")) from None
    except OSError as exc:
        raise CountingError(_unwritable(path, exc.strerror or str(exc))) from None
    if not existed:
        path.unlink()


def _say_if_zone_is_off(
    amplitude: AmplitudeCounts,
    ledger: LedgerFigures,
    rows: list[Row],
    plan: Plan,
    counts: dict[dt.datetime, int],
    say: Any,
) -> None:
    """Unexplained rows: if a wrong amplitude_time_zone explains them, say so (zone_hint.py).
    Hourly counts are at hand by hour; by day, one more query (hourly buckets: 7 days a query)
    asks for the hours of the week around the day with the most unexplained events."""
    start, end = plan.start, plan.end
    if plan.by_day:
        periods = plan.periods()
        worst = max(range(len(periods)), key=lambda index: rows[index].unexplained)
        window = ZONE_WINDOW_DAYS * DAY  # moved(): the week may reach past year 1 or 9999
        start = max(plan.start, moved(periods[worst], -(ZONE_WINDOW_DAYS // 2) * DAY))
        end = min(plan.end, moved(start, window))
        start = max(plan.start, moved(end, -window))
        counts = amplitude.counts(start, end, by_day=False)
    shift = zone_shift(chart_hours(ledger), counts, start, end)
    if shift is not None:
        say(zone_hint(amplitude.zone, amplitude.zone.key, shift, start))


def write_report(rows: list[Row], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        table = [dict(zip(COLUMNS, row.values(), strict=True)) for row in rows]
        path.write_bytes(orjson.dumps(table, option=orjson.OPT_INDENT_2))
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows([("" if v is None else v) for v in row.values()] for row in rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def render(rows: list[Row]) -> str:
    """The table as aligned text (numbers right-aligned, status last and unpadded)."""
    cells = [list(COLUMNS)] + [["" if v is None else str(v) for v in row.values()] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS) - 1)]
    lines = []
    for number, line in enumerate(cells):
        parts = [
            cell.ljust(width) if i == 0 or number == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=False))
        ]
        lines.append("  ".join([*parts, line[-1]]))
    return "\n".join(lines)


class _OneLineUsage(click.Command):
    """Click's command, with a usage error (an unknown option, a bad --period or --start) as
    one line and exit 2 like every other refusal, not click's four-line usage block."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.UsageError as exc:
            click.echo(f"target-posthog-verify: {exc.format_message()}", err=True)
            sys.exit(2)
        except click.Abort:  # Ctrl-C at a prompt (there are none), as click would say it
            click.echo("Aborted!", err=True)
            sys.exit(1)


def _finite(hours: float) -> float:
    """click's FloatRange lets nan through (it compares false both ways)."""
    if not math.isfinite(hours):
        raise click.BadParameter(f"{hours} is not a number of hours")
    return hours


@click.command(cls=_OneLineUsage, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "configs", multiple=True, help="JSON settings file, or ENV (default).")
@click.option("--period", type=click.Choice(["day", "hour"]), default="day", show_default=True)
@click.option("--start", help="First UTC day or hour (default: tap-amplitude's start_date, "
              "or the first upload hour read if earlier).")  # fmt: skip
@click.option("--end", help="Exclusive end, UTC (default: through tap-amplitude's end_date, "
              "else through now).")  # fmt: skip
@click.option("--output", type=click.Path(path_type=Path), help="CSV, or .json (default: "
              "verification-<period>.csv beside the dead-letter file).")  # fmt: skip
@click.option("--settle-hours", type=click.FloatRange(min=0, max=24 * 366), default=6.0,
              show_default=True, callback=lambda _c, _p, hours: _finite(hours),
              help="Deliveries this recent may not be visible in PostHog yet.")  # fmt: skip
def cli(configs: tuple[str, ...], **options: Any) -> None:
    """Compare Amplitude's counts, the migration's ledger and PostHog's counts per period."""
    options["start"] = moment_option("--start", options["start"])
    options["end"] = moment_option("--end", options["end"])
    check_options(options["start"], options["end"])  # before any setting or query
    config: dict[str, Any] = {}

    def say(line: str) -> None:
        click.echo(f"target-posthog-verify: {line}", err=True)

    try:
        config = load_config(configs)
        rows, output = verify(config, options, say)
    except CountingError as exc:
        say(redact(f"cannot verify: {exc}", config))
        sys.exit(2)
    except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as exc:
        # app_host or the Amplitude URL is not a URL requests can use: a setting, said once.
        say(redact(f"cannot verify: a URL in the settings is not usable ({exc})", config))
        sys.exit(2)
    click.echo(render(rows))
    bad = [row for row in rows if not row.ok]
    explained = sum(1 for row in rows if row.ok and row.status != "OK")
    say(f"{len(rows)} rows: {len(rows) - len(bad) - explained} OK, {explained} explained, "
        f"{len(bad)} with events missing or unexplained; written to {output}")  # fmt: skip
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    cli()
