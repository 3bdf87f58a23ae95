"""tap-amplitude: settings, their validation, and the wiring of the `events` stream."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import sys
from collections.abc import Mapping
from functools import cached_property
from types import FrameType
from typing import Any, ClassVar
from urllib.parse import urlsplit

from singer_plugin_common.log_levels import show_levels_where_the_format_drops_them
from singer_plugin_common.settings_env import (
    announce_settings,
    remove_meltano_config_files_and_say,
    values_from_text,
)
from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import CapabilitiesEnum, PluginCapabilities
from singer_sdk.singerlib import StateMessage

from tap_amplitude import writer
from tap_amplitude.client import REGION_URLS, FatalExportError
from tap_amplitude.export import CorruptExportError
from tap_amplitude.setaside import UnreadableLinesStream
from tap_amplitude.sources import LocalSource
from tap_amplitude.streams import EventsStream
from tap_amplitude.windows import MAX_WINDOW_HOURS, floor_hour
from tap_amplitude.writer import OrjsonWriter

# Amplitude makes an hour exportable about two hours after it ends loading; younger hours can
# come back empty or partial, so they are left for the next run.
EXPORT_DELAY = dt.timedelta(hours=2)
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class TapAmplitude(Tap):
    """Singer tap for Amplitude's raw event history (Export API or exported files)."""

    name = "tap-amplitude"
    message_writer_class = OrjsonWriter
    # No BATCH: batch files would bypass the per-window bookmarks that make resuming safe.
    capabilities: ClassVar[list[CapabilitiesEnum]] = [
        capability for capability in Tap.capabilities if capability != PluginCapabilities.BATCH
    ]

    config_jsonschema = th.PropertiesList(
        # Credentials (or export_path instead)
        th.Property(
            "api_key",
            th.StringType(nullable=False),
            secret=True,
            title="API key",
            description="Project API key (HTTP Basic user of the Export API).",
        ),
        th.Property(
            "secret_key",
            th.StringType(nullable=False),
            secret=True,
            title="Secret key",
            description="Project secret key (HTTP Basic password of the Export API).",
        ),
        # Range
        th.Property(
            "start_date",
            th.DateTimeType(nullable=False),
            required=True,
            title="Start date",
            description="First hour to export, by server_upload_time (UTC; floored to the hour).",
        ),
        th.Property(
            "end_date",
            th.DateTimeType(nullable=True),
            title="End date",
            description=(
                "Exclusive end, by server_upload_time (UTC; floored to the hour). Default and "
                "upper bound: the last hour Amplitude has finished loading (now minus 2 h)."
            ),
        ),
        # Where
        th.Property(
            "data_region",
            th.StringType(nullable=False),
            default="us",
            title="Data region",
            description="us (amplitude.com) or eu (analytics.eu.amplitude.com).",
        ),
        th.Property(
            "api_url",
            th.StringType(nullable=True),
            title="API URL",
            description="Overrides the region's base URL (proxies, tests). https only, except "
            "for 127.0.0.1/localhost.",
        ),
        th.Property(
            "export_path",
            th.StringType(nullable=True),
            title="Export path",
            description="Folder or glob of export zips and/or .json.gz files (UI download, S3 "
            "or GCS export), read instead of the API. Same records, same bookmarks.",
        ),
        # Windows and requests
        th.Property(
            "window_hours",
            th.IntegerType(nullable=True, minimum=1, maximum=MAX_WINDOW_HOURS),
            title="Window hours",
            description="Upper bound on the hours asked for in one export request (and the "
            "first window's width). Unset: windows adapt to the data, up to 365 days.",
        ),
        th.Property(
            "target_window_mb",
            th.IntegerType(nullable=False, minimum=1),
            default=256,
            title="Target window size (MB)",
            description="Archive size adaptive windows aim at, from the bytes/hour seen so far.",
        ),
        th.Property(
            "request_timeout",
            th.NumberType(nullable=False, minimum=1),
            default=300,
            title="Request timeout (s)",
            description="Seconds to wait for Amplitude to connect or send the next bytes.",
        ),
        th.Property(
            "max_retries",
            th.IntegerType(nullable=False, minimum=0),
            default=5,
            title="Max retries",
            description="Retries of a failing request (429, 5xx, dropped or truncated "
            "downloads), with exponential backoff and jitter; Retry-After is honoured.",
        ),
        th.Property(
            "retry_base_seconds",
            th.NumberType(minimum=0),
            default=2.0,
            title="Retry base wait (s)",
            description="Wait before the first retry; doubles with each retry (with jitter).",
        ),
    ).to_dict()

    _announce_on_start: ClassVar[bool] = False  # set by `invoke` for a sync

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        show_levels_where_the_format_drops_them()  # under Meltano (singer_plugin_common.log_levels)
        if not self.logger.isEnabledFor(logging.DEBUG):
            self.metrics_logger.setLevel(logging.WARNING)  # SDK METRIC lines: debug level only
        if type(self)._announce_on_start:
            self.announce()

    @cached_property
    def end_hour(self) -> dt.datetime:
        """Exclusive end of this run, decided once: end_date, capped at what Amplitude loaded."""
        return self._end_hour(dt.datetime.now(dt.UTC))

    @property
    def base_url(self) -> str:
        return str(self.config.get("api_url") or REGION_URLS[self.config["data_region"]])

    def discover_streams(self) -> list[Stream]:
        return [EventsStream(self), UnreadableLinesStream(self)]

    def announce(self) -> None:
        """Say once, before reading, what this run will do (the CLI's sync; not discovery)."""
        settings = self.config_jsonschema["properties"]
        announce_settings(self.logger, "TAP_AMPLITUDE_", settings, self.settings_in_force)

    def settings_in_force(self) -> str:
        """The settings that change what a run does, in one line (no secrets)."""
        config = self.config
        source = (
            f"export_path {config['export_path']}"
            if config.get("export_path")
            else f"Export API {self.base_url} (data_region {config['data_region']})"
        )
        windows = (
            f"windows of at most {config['window_hours']} h"
            if config.get("window_hours")
            else f"adaptive windows aiming at {config['target_window_mb']} MB"
        )
        return (
            f"{source}; start_date {config['start_date']}; end_date "
            f"{config.get('end_date') or 'unset (now - 2 h)'}, this run stops at "
            f"{self.end_hour.isoformat()}; {windows}; request_timeout "
            f"{config['request_timeout']} s; max_retries {config['max_retries']}"
        )

    # --- validation ----------------------------------------------------------------------

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """Schema checks plus the rules a schema cannot say; one line per problem."""
        if self._config:  # Meltano passes kind-string settings as text (values_from_text)
            values_from_text(self._config, self.config_jsonschema["properties"])
        region = self._config.get("data_region") if self._config else None
        if isinstance(region, str):  # a choice, in any case ("EU")
            self._config["data_region"] = region.strip().lower()
        errors = super()._validate_config(raise_errors=False)
        if not errors:
            errors = self._cross_field_errors(dt.datetime.now(dt.UTC))
        region = self._config.get("data_region", "us") if self._config else "us"
        if region not in REGION_URLS:
            errors.append(
                f"data_region {region!r} is not one of: {', '.join(sorted(REGION_URLS))} (any case)"
            )
        if errors and raise_errors:
            raise ConfigValidationError("Config validation failed", errors=errors)
        return errors

    def _cross_field_errors(self, now: dt.datetime) -> list[str]:
        config = self._config
        if not config:  # --about / --discover without a config
            return []
        errors = [
            f"Unknown setting '{key}'."
            for key in sorted(config)
            if key not in self.config_jsonschema["properties"]
        ]
        if not config.get("export_path") and not (
            config.get("api_key") and config.get("secret_key")
        ):
            errors.append("Set api_key and secret_key (Export API), or export_path (files).")
        start = _parse_time(config.get("start_date"))
        end = _parse_time(config.get("end_date"))
        errors.extend(
            f"{key} {config[key]!r} is not an ISO 8601 date-time."
            for key, parsed in (("start_date", start), ("end_date", end))
            if config.get(key) and parsed is None
        )
        if start is not None and start > now:
            errors.append(f"start_date {config['start_date']} is in the future.")
        if start is not None and end is not None and end <= start:
            errors.append(
                f"end_date {config['end_date']} is not after start_date {config['start_date']}."
            )
        api_url = config.get("api_url")
        if api_url:
            parts = urlsplit(api_url)
            if parts.scheme != "https" and not (
                parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS
            ):
                errors.append(
                    "api_url must use https (plain http only for 127.0.0.1/localhost): "
                    f"{parts.scheme}://{parts.hostname}"
                )
        export_path = config.get("export_path")
        if export_path and not LocalSource.find_files(export_path):
            errors.append(f"export_path {export_path} names no .zip or .json.gz files.")
        return errors

    def _end_hour(self, now: dt.datetime) -> dt.datetime:
        """Exclusive end of this run: end_date, never later than what Amplitude has loaded."""
        loaded_until = floor_hour(now - EXPORT_DELAY)
        end = _parse_time(self.config.get("end_date"))
        if end is None or floor_hour(end) > loaded_until:
            if end is not None:
                self.logger.info(
                    "end_date is past the last hour Amplitude has finished loading; stopping "
                    "at %s, later hours are left for the next run.",
                    loaded_until.isoformat(),
                )
            return loaded_until
        return floor_hour(end)

    # --- running -------------------------------------------------------------------------

    @classmethod
    def invoke(cls, **options: Any) -> None:
        """singer-sdk's invoke; a failure the tap explains (refused keys, retries exhausted,
        a damaged export) ends the run with that one line and exit code 1, not a traceback
        that buries it."""
        cls._announce_on_start = not any(options.get(k) for k in ("discover", "test", "about"))
        if cls._announce_on_start:
            # singer-sdk has read the config files already: Meltano's copy, keys in clear, goes
            # now (not at discovery: Meltano passes the same file to the sync that follows).
            remove_meltano_config_files_and_say(sys.argv, "tap", cls.logger)
        try:
            super().invoke(**options)
        except ConfigValidationError as exc:
            for error in exc.errors:
                cls.logger.error("tap-amplitude cannot start: %s", error)
            sys.exit(1)
        except (FatalExportError, CorruptExportError) as exc:
            cls.logger.error("tap-amplitude stopped: %s", exc)
            sys.exit(1)
        except BrokenPipeError:
            # Whatever read the output (a target, Meltano) has gone; its own error says why.
            # Point stdout at /dev/null so that the interpreter's last flush cannot fail too.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            cls.logger.error(
                "tap-amplitude stopped: its output is no longer read (broken pipe); the next "
                "run resumes from the last STATE the target emitted"
            )
            sys.exit(1)

    # --- termination ---------------------------------------------------------------------

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM/SIGINT: stop within seconds, exit 128 + signal number.

        The state never holds a bookmark for an hour still being read, so the closing STATE
        (written only when it can follow everything already queued, see `writer.stop`) is safe
        to resume from; the records of the unfinished hour are simply sent again.
        """
        # A second request changes nothing (Meltano adds a SIGTERM to a Ctrl-C on the group).
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            signal.signal(stop_signal, signal.SIG_IGN)
        name = signal.Signals(signum).name
        read = _bookmark(self.state)
        self.logger.warning(
            "tap-amplitude stopped on %s (%s); the next run resumes from the last STATE the "
            "target confirmed",
            name,
            f"read in full up to {read}" if read else "no hour read in full yet",
        )
        writer.stop(
            self.message_writer.format_message(StateMessage(value=self.state)), 128 + signum
        )  # exits now, or at the end of the write it interrupted


def _not_sdk_noise(record: logging.LogRecord) -> bool:
    """The SDK says this at every start, under Meltano always (it passes a config file)."""
    return record.msg != "Skipping parse of env var settings..."


logging.getLogger(TapAmplitude.name).addFilter(_not_sdk_noise)


def _bookmark(state: Mapping[str, Any]) -> str | None:
    """The events stream's bookmark in a Singer state, if any."""
    value = state.get("bookmarks", {}).get("events", {}).get("replication_key_value")
    return str(value) if value else None


def _parse_time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
