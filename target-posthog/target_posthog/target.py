"""target-posthog: settings, start-up checks, and the wiring of mapping, registry and delivery.

The target (not a sink) owns the alias registry and the delivery pipeline: singer-sdk
replaces sinks on schema changes and drains them in parallel threads. Every STATE, whether
it arrives from the tap or is re-written by singer-sdk's drain_all(), goes through the
delivery watermark and reaches stdout only once everything before it is confirmed.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any, ClassVar

from singer_plugin_common.log_levels import show_levels_where_the_format_drops_them
from singer_plugin_common.settings_env import (
    announce_settings,
    remove_meltano_config_files_and_say,
    values_from_text,
)
from singer_sdk.exceptions import (
    ConfigValidationError,
    InvalidRecord,
    MissingKeyPropertiesError,
)
from singer_sdk.helpers.capabilities import CapabilitiesEnum, PluginCapabilities
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.plugin_base import PluginBase, _ConfigInput
from singer_sdk.singerlib.exceptions import InvalidInputLine
from singer_sdk.target_base import Target

from target_posthog.client import PostHogClient
from target_posthog.deadletter import DeadLetters, JsonLinesFile
from target_posthog.delivery import Delivery
from target_posthog.ending import STOPPING_ERRORS, Ending
from target_posthog.event_keys import latest_time
from target_posthog.input_lines import InputLines
from target_posthog.ledger import Ledger
from target_posthog.mapping_notes import MappingNotes
from target_posthog.person_reader import reader_for
from target_posthog.profiles import OVERWRITE, Profiles
from target_posthog.progress import Counts, Progress, bookmarks_text
from target_posthog.project import check_registry
from target_posthog.reader import (
    FastSingerReader,
    StopRequests,
    TerminationRequested,
    hand_off_input,
    read_input_to_end,
)
from target_posthog.registry import AliasRegistry, RegistryError
from target_posthog.registry_store import redact
from target_posthog.sending import batch_size, dry_run_sender, posthog_sender, throttle
from target_posthog.setaside import STREAM_NAME as UNREADABLE_LINES
from target_posthog.setaside import SetAsideLines
from target_posthog.settings import CONFIG_SCHEMA, config_problems
from target_posthog.sinks import EventsSink, UnreadableLinesSink, encode_event
from target_posthog.state_output import StateOutput
from target_posthog.summary import run_counts, run_summary

PROGRESS_INTERVAL_SECONDS = 5.0


class TargetPostHog(Target):
    """Lands Amplitude export records in PostHog through its batch API, exactly once."""

    name = "target-posthog"
    default_sink_class = EventsSink
    message_reader_class = FastSingerReader
    # No flattening (it would break the nested Amplitude record) and no schema validation.
    capabilities: ClassVar[list[CapabilitiesEnum]] = [
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.STRUCTURED_LOGGING,
    ]

    config_jsonschema = CONFIG_SCHEMA

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        show_levels_where_the_format_drops_them()  # under Meltano (singer_plugin_common.log_levels)
        if not self.logger.isEnabledFor(logging.DEBUG):
            self.metrics_logger.setLevel(logging.WARNING)  # SDK METRIC lines: debug level only
        # One sink drain at a time: sinks share one Delivery (singer-sdk drains in 8 threads).
        self.max_parallelism = 1
        self._lean_sinks: dict[str, EventsSink] = {}
        self.started_at = time.monotonic()
        self._stopping = threading.Event()
        self._stop_requests = StopRequests(self._stopping)
        self.retries = 0
        config = self.config
        self.dry_run = bool(config.get("dry_run_path"))
        self.state_output = StateOutput(
            dry_run=self.dry_run, logger=self.logger, counts=self.counts
        )
        self.dead_letters = DeadLetters(Path(config["dead_letter_path"]))
        self.mapping_notes = MappingNotes()
        # Later event times PostHog would replace with the time of ingestion (event_keys.py).
        self.latest_event_time = latest_time(dt.datetime.now(dt.UTC))
        self.registry = AliasRegistry(config["alias_registry"], read_only=self.dry_run)
        check_registry(self.registry.database, config["host"], config["api_key"])
        self.set_aside = SetAsideLines(Path(config["dead_letter_path"]))
        self.input_lines = InputLines(self.set_aside)
        if isinstance(self.message_reader, FastSingerReader):
            self.message_reader.input_lines = self.input_lines
        self.profiles = Profiles(
            config["alias_registry"],
            existing=config.get("existing_properties", OVERWRITE),
            read_only=self.dry_run,
            dead_letters=self.dead_letters,
            reader=reader_for(config),
        )
        self.ledger = Ledger(None if self.dry_run else self.registry.database)
        self.client: PostHogClient | None = None
        self._sender_files: tuple[JsonLinesFile, ...] = ()  # a dry run's payloads: close()
        if self.dry_run:
            sender, payloads = dry_run_sender(config)
            self._sender_files = (payloads,)
        else:
            sender, self.client = posthog_sender(
                config,
                database=self.registry.database,
                stopping=self._stopping,
                on_retry=self._count_retry,
                user_agent=f"{self.name}/{self.plugin_version}",
                logger=self.logger,
            )
        self.delivery = Delivery(
            sender=sender,
            registry=self.registry,
            profiles=self.profiles,
            ledger=self.ledger,
            dead_letters=self.dead_letters,
            emit_state=self.state_output.withhold if self.dry_run else self.state_output.emit,
            concurrency=1 if self.dry_run else config["concurrency"],
            batch_size=batch_size(self.config),
            throttle=throttle(
                config, self._stopping, None if self.dry_run else self.registry.database
            ),
            stopping=self._stopping,
            logger=self.logger,
            durable_files=(*self._sender_files, *self.set_aside.files),
        )
        self.ending = Ending(
            self.delivery,
            self.state_output,
            self.logger,
            close=self.close,
            summary=self.summary,
            request_timeout=float(config["request_timeout"]),
        )
        self._progress = threading.Thread(
            target=self._report_progress, daemon=True, name="posthog-progress"
        )
        self._progress.start()
        if self.dry_run:
            self.logger.warning(
                "dry run: payloads go to %s; nothing is sent, the alias registry is not "
                "written and no STATE is emitted, so the real run starts where this one did",
                config["dry_run_path"],
            )

    def announce(self) -> None:
        """Say once, at start, what this run will do: settings in force, misspelt variables."""
        settings = self.config_jsonschema["properties"]
        announce_settings(self.logger, "TARGET_POSTHOG_", settings, self.settings_in_force)

    def settings_in_force(self) -> str:
        """The settings that change what a run does, in one line (never the key)."""
        config = self.config
        limit = config.get("max_events_per_minute")
        return (
            f"host {config['host']}; historical_migration {config['historical_migration']}; "
            f"speed limit {f'{limit} events/min' if limit else 'none (no limit)'}; "
            f"{batch_size(self.config)} events per request, concurrency "
            f"{1 if self.dry_run else config['concurrency']}; alias_registry "
            f"{redact(config['alias_registry'])}; existing_properties "
            f"{config.get('existing_properties', OVERWRITE)}; "
            f"dead_letter_path {config['dead_letter_path']}; "
            + (f"dry run into {config['dry_run_path']}" if self.dry_run else "dry run off")
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(host={self.config.get('host')!r})"

    # --- configuration -------------------------------------------------------------------

    @classmethod
    def append_builtin_config(cls, config_jsonschema: dict) -> None:
        """Only the built-ins this target honours (not batch_size_rows, load_method, ...)."""
        PluginBase.append_builtin_config.__func__(cls, config_jsonschema)  # type: ignore[attr-defined]

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """Schema checks plus the rules a schema cannot say, one clear line each."""
        if self._config:  # Meltano passes kind-string settings as text (values_from_text)
            values_from_text(self._config, self.config_jsonschema["properties"])
        try:
            errors = super()._validate_config(raise_errors=raise_errors)
        except ConfigValidationError as exc:
            errors = list(exc.errors)
        errors += config_problems(dict(self.config), set(self.config_jsonschema["properties"]))
        api_key = self.config.get("api_key")
        if isinstance(api_key, str) and api_key:
            errors = [error.replace(api_key, "[api_key]") for error in errors]
        if errors and raise_errors:
            raise ConfigValidationError("Config validation failed", errors=errors)
        return errors

    # --- messages ------------------------------------------------------------------------

    def _process_schema_message(self, message_dict: dict) -> None:
        super()._process_schema_message(message_dict)
        stream = message_dict["stream"]
        maps = self.mapper.stream_maps.get(stream, [])
        self._lean_sinks.pop(stream, None)
        if (
            len(maps) == 1
            and type(maps[0]) is SameRecordTransform
            and maps[0].stream_alias == stream
        ):
            sink = self._sinks_active[stream]
            if isinstance(sink, EventsSink):
                self._lean_sinks[stream] = sink

    def _process_record_message(self, message_dict: dict) -> None:
        """Lean path for streams without stream maps: no copies, validation or metrics.

        With stream maps configured, singer-sdk's own path runs (slower, same result).
        """
        sink = self._lean_sinks.get(message_dict.get("stream"))  # type: ignore[arg-type]
        record = message_dict.get("record")
        if sink is not None and isinstance(record, dict):
            # No key check: a record without `uuid` gets the documented derived one.
            sink.handle(record)
            return
        try:
            super()._process_record_message(message_dict)
        except (InvalidRecord, MissingKeyPropertiesError) as exc:
            # One record the SDK refuses must not stop the migration: set it aside, with why.
            reason = f"refused by singer-sdk: {type(exc).__name__}: {exc}".splitlines()[0]
            self.dead_letters.add_record(str(message_dict.get("stream")), reason, record or {})
            self.ledger.refused_by_sdk(str(message_dict.get("stream")), record, type(exc).__name__)

    def _process_state_message(self, message_dict: dict) -> None:
        self._assert_line_requires(message_dict, requires={"value"})
        if message_dict["value"] != self._latest_state:
            super()._process_state_message(message_dict)
            self.delivery.add_state(message_dict["value"])

    def _write_state_message(self, state: dict) -> None:
        """singer-sdk's drain_all() writes here: through the watermark, never straight out."""
        self.delivery.add_state(state)

    def get_sink_class(self, stream_name: str) -> type[EventsSink | UnreadableLinesSink]:
        """tap-amplitude's `unreadable_lines` are kept byte for byte; any other stream is
        read as Amplitude export records."""
        if stream_name == UNREADABLE_LINES:
            return UnreadableLinesSink
        return EventsSink

    def process_endofpipe(self) -> None:
        """End of input: deliver everything, emit the final STATE, report."""
        super().process_endofpipe()  # drain_all: flushes the open batch, registers the STATE
        self.delivery.settle()  # every event confirmed: now the properties they showed
        self._send_profile_updates()
        self.delivery.finish()
        self.close()
        if self._latest_state is None:
            # Every singer-sdk tap ends a whole run with a STATE: none at all means the tap
            # stopped early, its cause line just before; "done" would mislead, and a long line
            # here would bury that cause, so the summary first and a short pointer last.
            self.logger.info("input ended: %s", self.summary())
            self.logger.warning(
                "the tap stopped before it finished (its line above says why): no STATE came, "
                "no bookmark moved"
            )
        else:
            self.logger.info("done: %s", self.summary())

    def _send_profile_updates(self) -> None:
        """One update per person and group whose newest properties PostHog does not have yet.

        Sent after the events they summarise are confirmed, so no `$set` of this run can land
        after them; they carry no STATE (the registry remembers what is still to send).
        """
        delivery = self.delivery
        for event, pending in self.profiles.updates(self.registry.owner_of):
            delivery.add(delivery.next_position(), [encode_event(event)], [pending])
        withheld = self.profiles.group_updates_withheld
        if withheld:
            self.logger.warning(
                "existing_properties is keep: %d group updates not sent (PostHog has no "
                "set-once for groups; they would overwrite live values)",
                withheld,
            )

    # --- running, stopping, reporting ----------------------------------------------------

    @classmethod
    def invoke(  # type: ignore[override]
        cls,
        *,
        about: bool = False,
        about_format: str | None = None,
        config: _ConfigInput | None = None,
        file_input: Any = None,
    ) -> None:
        """singer-sdk's invoke, plus clean exits on signals and delivery failures."""
        PluginBase.invoke.__func__(cls, about=about, about_format=about_format)  # type: ignore[attr-defined]
        cls.print_version(print_fn=cls.logger.info)
        # singer-sdk has read the config files already: Meltano's copy, keys in clear, goes now.
        remove_meltano_config_files_and_say(sys.argv, "target", cls.logger)
        config = config or _ConfigInput()
        # Records are acyclic and short-lived: reference counting frees them. Fewer cyclic
        # GC passes over the per-record dicts save a few percent (CLI only: a process-wide knob).
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)
        try:
            target = cls(
                config=config.config, validate_config=True, parse_env_config=config.parse_env
            )
        except RegistryError as exc:
            cls.logger.error("target-posthog cannot start: %s", exc)
            code = 1
        except ConfigValidationError as exc:
            for error in exc.errors:
                cls.logger.error("target-posthog cannot start: %s", error)
            code = 1
        else:
            target.announce()
            code = target.run(file_input)
            reader = target.message_reader
            if isinstance(reader, FastSingerReader) and reader.at_end_of_input:
                sys.exit(code)
        if code > 128 and file_input is None:
            read_input_to_end()  # a stop request: the tap stops too (see the function)
        elif code and file_input is None:
            hand_off_input()  # failed before the end of input: see reader.hand_off_input
        sys.exit(code)

    def run(self, file_input: Any = None) -> int:
        """Process all input; the exit code (0, 1 on failure, 128+signal on SIGTERM/SIGINT)."""
        try:
            self.listen(file_input)
        except TerminationRequested as stop:
            self.logger.warning(
                "stopping on signal %d: no new input; settling batches in flight", stop.signum
            )
            return self.ending.stop_now(stop.signum)
        except InvalidInputLine as exc:
            # Mostly a tap that died while writing its last line: all before it is whole,
            # so deliver it and emit the STATE that covers it, then fail.
            return self.ending.settle_then_fail(f"target-posthog stopped: {exc}")
        except STOPPING_ERRORS as exc:
            signum = self._reader_shutdown_signal()
            if signum is not None:  # a signal during the final wait: stopped, not failed
                self.logger.warning("stopping on signal %d while finishing", signum)
                return self.ending.stop_now(signum)
            return self.ending.stop_now(None, f"target-posthog failed: {exc}")
        return 0

    def _reader_shutdown_signal(self) -> int | None:
        reader = self.message_reader
        return reader.shutdown.signum if isinstance(reader, FastSingerReader) else None

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        """Record the signal; the reader stops at the next line (see reader.StopRequests)."""
        reader = getattr(self, "message_reader", None)
        requests = getattr(self, "_stop_requests", None)
        if not isinstance(reader, FastSingerReader) or requests is None:
            raise SystemExit(128 + signum)  # not wired up yet: nothing to settle
        requests.handle(signum, reader.shutdown)

    def _count_retry(self, problem: str) -> None:
        self.retries += 1
        self.logger.warning("retrying a batch: %s", problem)

    def close(self) -> None:
        self._stopping.set()
        if self.client is not None:
            self.client.close()
        self.dead_letters.file.close()
        for file in self._sender_files:
            file.close()
        self.set_aside.close()
        self.registry.close()
        self.profiles.close()

    def summary(self) -> str:
        return run_summary(self)

    def counts(self) -> Counts:
        return run_counts(self)

    def _report_progress(self) -> None:
        progress = Progress(self.config.get("max_events_per_minute"))
        while not self._stopping.wait(PROGRESS_INTERVAL_SECONDS):
            line = progress.line(
                self.counts(),
                self.delivery.in_flight,
                bookmark=bookmarks_text(self.state_output.last_checkpoint),
            )
            self.logger.info(
                "progress%s: %s", " (dry run: nothing sent)" if self.dry_run else "", line
            )


def _not_sdk_noise(record: logging.LogRecord) -> bool:
    """The SDK says this at every start, under Meltano always (it passes a config file)."""
    return record.msg != "Skipping parse of env var settings..."


logging.getLogger(TargetPostHog.name).addFilter(_not_sdk_noise)
