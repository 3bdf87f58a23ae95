"""target-posthog: settings, start-up checks, and the wiring of mapping, registry and delivery.

The target (not a sink) owns the alias registry and the delivery pipeline: singer-sdk
replaces sinks on schema changes and drains them in parallel threads. Every STATE, whether
it arrives from the tap or is re-written by singer-sdk's drain_all(), goes through the
delivery watermark and reaches stdout only once everything before it is confirmed.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any, ClassVar
from urllib.parse import urlsplit

import orjson
from singer_sdk import typing as th
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

from target_posthog.client import Answer, DeliveryError, PostHogClient, RetryPolicy
from target_posthog.deadletter import DeadLetters, JsonLinesFile, LocalFileError
from target_posthog.delivery import Delivery, Sender, Throttle
from target_posthog.ledger import Ledger
from target_posthog.profiles import OVERWRITE, Profiles
from target_posthog.progress import Checkpoints, Counts, Progress, bookmarks_text
from target_posthog.project import bind_registry, check_registry
from target_posthog.rate_budget import SharedThrottle
from target_posthog.reader import (
    FastSingerReader,
    TerminationRequested,
    hand_off_input,
    read_input_to_end,
)
from target_posthog.registry import AliasRegistry, RegistryError
from target_posthog.registry_store import redact
from target_posthog.setaside import STREAM_NAME as UNREADABLE_LINES
from target_posthog.setaside import SetAsideLines
from target_posthog.settings_env import remove_meltano_config_file, unknown_setting_variables
from target_posthog.sinks import EventsSink, UnreadableLinesSink, encode_event
from target_posthog.verify_settings import VERIFY_SETTINGS

# What stops a run with one clear line (no traceback): PostHog, the registry, or a local file.
_STOPPING_ERRORS = (DeliveryError, RegistryError, LocalFileError)

PROGRESS_INTERVAL_SECONDS = 5.0
_LOCAL_HOSTS = frozenset(("127.0.0.1", "localhost", "::1"))


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

    config_jsonschema = th.PropertiesList(
        th.Property(
            "api_key",
            th.StringType(nullable=False),
            required=True,
            secret=True,
            title="PostHog project API key",
            description="The project API key (phc_...). Never logged or written.",
        ),
        th.Property(
            "host",
            th.StringType,
            default="https://us.i.posthog.com",
            title="Host",
            description="https://us.i.posthog.com, https://eu.i.posthog.com or a "
            "self-hosted URL. https is required except for localhost.",
        ),
        th.Property(
            "historical_migration",
            th.BooleanType,
            default=True,
            title="Historical migration",
            description="Send as a historical migration (PostHog's import pipeline).",
        ),
        th.Property(
            "batch_size",
            th.IntegerType(minimum=1, maximum=50_000),
            default=1000,
            title="Events per request",
            description="Most events per request; requests are also kept under 5 MiB.",
        ),
        th.Property(
            "concurrency",
            th.IntegerType(minimum=1, maximum=64),
            default=4,
            title="Requests in flight",
            description="Batches sent at the same time (raise it for a slow link).",
        ),
        th.Property(
            "max_events_per_minute",
            th.IntegerType(minimum=1),
            title="Max events/min",
            description="The speed agreed with PostHog support for the whole migration; "
            "runs sharing one alias registry share it. Unset, no limit.",
        ),
        th.Property(
            "max_retries",
            th.IntegerType(minimum=0),
            default=10,
            title="Max retries",
            description="Retries of one request (429, 5xx, timeouts, dropped "
            "connections) before the run fails.",
        ),
        th.Property(
            "retry_base_seconds",
            # A number, or its decimal text: Meltano passes a kind-string setting as text (its
            # own `decimal` kind cannot be written to a config file: meltano 4.4 TypeError).
            th.CustomType(
                {"type": ["number", "string"], "minimum": 0, "pattern": r"^\d+(\.\d+)?$"}
            ),
            default=1.0,
            title="First retry wait (s)",
            description="Backoff doubles from this (with jitter, up to 60 s); "
            "Retry-After is always honoured.",
        ),
        th.Property(
            "request_timeout",
            th.NumberType(exclusive_minimum=0),
            default=30,
            title="Request timeout (s)",
            description="Seconds to wait for PostHog to answer one request; then it is "
            "retried (with the same uuids).",
        ),
        th.Property(
            "alias_registry",
            th.StringType,
            default="target-posthog-aliases.sqlite",
            title="Alias registry",
            description="Where every (device, user) alias PostHog confirmed and every "
            "shared device are kept: a SQLite file (relative to the working folder) or a "
            "PostgreSQL URL (postgresql://user:password@host:5432/db; the password may "
            "instead come from PGPASSWORD), which parallel jobs can share.",
        ),
        th.Property(
            "existing_properties",
            th.StringType(allowed_values=["overwrite", "keep"]),
            default="overwrite",
            title="Existing person and group properties",
            description="overwrite: each person and group ends with its newest Amplitude "
            "values (a new PostHog project, or Amplitude is the source of truth). keep: the "
            "project already receives live data; history only fills properties that are "
            "missing (person values sent as $set_once) and group properties are not sent "
            "(PostHog has no set-once for groups).",
        ),
        th.Property(
            "dead_letter_path",
            th.StringType,
            default="target-posthog-dead-letter.jsonl",
            title="Dead-letter file",
            description="JSONL of records not sent, each with the reason.",
        ),
        th.Property(
            "dry_run_path",
            th.StringType,
            title="Dry-run file",
            description="Write the exact request payloads (without api_key) to this "
            "JSONL file, replacing an earlier dry run's, and send nothing. No STATE is "
            "emitted: no bookmark moves.",
        ),
        *VERIFY_SETTINGS,  # read only by target-posthog-verify (verify_settings.py)
    ).to_dict()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not self.logger.isEnabledFor(logging.DEBUG):
            self.metrics_logger.setLevel(logging.WARNING)  # SDK METRIC lines: debug level only
        # One sink drain at a time: sinks share one Delivery (singer-sdk drains in 8 threads).
        self.max_parallelism = 1
        self._lean_sinks: dict[str, EventsSink] = {}
        self._stdout_lock = threading.Lock()
        self._state_reader_gone = False
        self._last_state_emitted: dict | None = None
        self._last_checkpoint: dict | None = None  # emitted, or withheld in a dry run
        self._checkpoints = Checkpoints(dry_run=bool(self.config.get("dry_run_path")))
        self._started = time.monotonic()
        self._stopping = threading.Event()
        signal_pipe_read, self._signal_pipe_write = os.pipe()
        threading.Thread(
            target=self._stop_on_signal,
            args=(signal_pipe_read,),
            daemon=True,
            name="posthog-signal",
        ).start()
        self._retries = 0
        config = self.config
        self.dry_run = bool(config.get("dry_run_path"))
        self.dead_letters = DeadLetters(Path(config["dead_letter_path"]))
        self.registry = AliasRegistry(config["alias_registry"], read_only=self.dry_run)
        check_registry(self.registry.database, config["host"], config["api_key"])
        self.set_aside = SetAsideLines(Path(config["dead_letter_path"]))
        self.profiles = Profiles(
            config["alias_registry"],
            existing=config.get("existing_properties", OVERWRITE),
            read_only=self.dry_run,
        )
        self.ledger = Ledger(None if self.dry_run else self.registry.database)
        self.client: PostHogClient | None = None
        sender, durable = self._make_sender()
        self._sender_files = durable  # the dry run's payloads: closed (flushed) by close()
        self.delivery = Delivery(
            sender=sender,
            registry=self.registry,
            profiles=self.profiles,
            ledger=self.ledger,
            dead_letters=self.dead_letters,
            emit_state=self._withhold_state if self.dry_run else self._emit_state,
            concurrency=1 if self.dry_run else config["concurrency"],
            batch_size=self._batch_size(),
            throttle=self._throttle(),
            stopping=self._stopping,
            logger=self.logger,
            durable_files=(*durable, *self.set_aside.files),
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
        for warning in unknown_setting_variables(
            os.environ, "TARGET_POSTHOG_", self.config_jsonschema["properties"]
        ):
            self.logger.warning(warning)
        self.logger.info("settings in force: %s", self.settings_in_force())

    def settings_in_force(self) -> str:
        """The settings that change what a run does, in one line (never the key)."""
        config = self.config
        limit = config.get("max_events_per_minute")
        return (
            f"host {config['host']}; historical_migration {config['historical_migration']}; "
            f"speed limit {f'{limit} events/min' if limit else 'none (no limit)'}; "
            f"{self._batch_size()} events per request, concurrency "
            f"{1 if self.dry_run else config['concurrency']}; alias_registry "
            f"{redact(config['alias_registry'])}; dead_letter_path {config['dead_letter_path']}; "
            + (f"dry run into {config['dry_run_path']}" if self.dry_run else "dry run off")
        )

    def _throttle(self) -> Throttle:
        """PostHog's agreed speed; shared through the registry with every run using it (a
        dry run, which writes no registry, paces itself alone)."""
        speed = self.config.get("max_events_per_minute")
        if self.dry_run:
            return Throttle(speed, self._stopping)
        return SharedThrottle(speed, self._stopping, self.registry.database)

    def _make_sender(self) -> tuple[Sender, tuple[JsonLinesFile, ...]]:
        config = self.config
        if self.dry_run:
            # Each dry run's file holds that run's payloads (it moves no bookmark, so the next
            # dry run covers the same range again).
            payloads = JsonLinesFile(Path(config["dry_run_path"]), replace=True)
            payloads.open_now()  # a run that writes nothing must not leave an earlier run's
            head = (
                b'{"historical_migration":'
                + (b"true" if config["historical_migration"] else b"false")
                + b',"batch":['
            )

            def write_payload(joined_events: memoryview) -> Answer:
                payloads.write_line(b"".join((head, joined_events, b"]}")))
                return Answer(200, "dry run")

            return write_payload, (payloads,)
        self.client = PostHogClient(
            host=config["host"],
            api_key=config["api_key"],
            historical_migration=config["historical_migration"],
            request_timeout=float(config["request_timeout"]),
            retry=RetryPolicy(config["max_retries"], float(config["retry_base_seconds"])),
            stopping=self._stopping,
            on_retry=self._count_retry,
            user_agent=f"{self.name}/{self.plugin_version}",
        )
        return self._binding_on_first_acceptance(self.client.send), ()

    def _binding_on_first_acceptance(self, send: Sender) -> Sender:
        """`send`, recording the registry's PostHog project once PostHog first accepts a
        request, before anything it accepted is recorded (see project.py)."""
        bound = threading.Event()
        lock = threading.Lock()

        def sending(joined_events: memoryview) -> Answer:
            answer = send(joined_events)
            if not bound.is_set() and answer.accepted:
                with lock:
                    if not bound.is_set():
                        line = bind_registry(
                            self.registry.database,
                            self.config["host"],
                            self.config["api_key"],
                            read_only=False,
                        )
                        if line:
                            self.logger.info(line)
                        bound.set()
            return answer

        return sending

    def _batch_size(self) -> int:
        """Under a throttle, about one second of events per batch, so sending stays smooth."""
        size = int(self.config["batch_size"])
        per_minute = self.config.get("max_events_per_minute")
        return min(size, max(1, per_minute // 60)) if per_minute else size

    def __repr__(self) -> str:
        return f"{type(self).__name__}(host={self.config.get('host')!r})"

    # --- configuration -------------------------------------------------------------------

    @classmethod
    def append_builtin_config(cls, config_jsonschema: dict) -> None:
        """Only the built-ins this target honours (not batch_size_rows, load_method, ...)."""
        PluginBase.append_builtin_config.__func__(cls, config_jsonschema)  # type: ignore[attr-defined]

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """Schema checks plus the rules a schema cannot say, one clear line each."""
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

    def _withhold_state(self, state: dict) -> None:
        """Dry run: nothing reached PostHog, so no bookmark may move past anything."""
        self._say_checkpoint(state)

    def _say_checkpoint(self, state: dict) -> None:
        self._last_checkpoint = state
        line = self._checkpoints.line(state, self.counts())
        if line:
            self.logger.info(line)

    def _emit_state(self, state: dict) -> None:
        line = orjson.dumps(state, option=orjson.OPT_APPEND_NEWLINE)
        with self._stdout_lock:
            if self._state_reader_gone:
                return  # said once already; the run is stopping
            try:
                write_stdout(line)
                self._last_state_emitted = state
                self._say_checkpoint(state)
            except BrokenPipeError as exc:
                self._state_reader_gone = True
                raise LocalFileError(
                    "cannot write STATE to stdout: nothing reads it any more (broken pipe). "
                    "The next run resumes from the last STATE that was stored"
                ) from exc

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
            remove_meltano_config_file(sys.argv, "target")
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
            return self._stop_now(stop.signum)
        except InvalidInputLine as exc:
            # Mostly a tap that died while writing its last line: all before it is whole,
            # so deliver it and emit the STATE that covers it, then fail.
            return self._settle_then_fail(f"target-posthog stopped: {exc}")
        except _STOPPING_ERRORS as exc:
            signum = self._reader_shutdown_signal()
            if signum is not None:  # a signal during the final wait: stopped, not failed
                self.logger.warning("stopping on signal %d while finishing", signum)
                return self._stop_now(signum)
            return self._stop_now(None, f"target-posthog failed: {exc}")
        return 0

    def _settle_then_fail(self, cause: str) -> int:
        """Input cannot go on: deliver what was received, emit its STATE, exit code 1."""
        try:
            self.delivery.finish()
        except _STOPPING_ERRORS as exc:
            return self._stop_now(None, f"target-posthog failed: {exc}")
        self.close()
        self._log_last_words(None, cause)
        return 1

    def _reader_shutdown_signal(self) -> int | None:
        reader = self.message_reader
        return reader.shutdown.signum if isinstance(reader, FastSingerReader) else None

    def _stop_now(self, signum: int | None, cause: str = "") -> int:
        """Settle what is in flight, close, say why and where the next run resumes; the exit
        code (128 + signal number for a stop request, else 1)."""
        grace = float(self.config["request_timeout"]) + 1.0
        self.delivery.abandon(grace)
        self.close()
        self._log_last_words(signum, cause)
        return 1 if signum is None else 128 + signum

    def _log_last_words(self, signum: int | None, cause: str) -> None:
        """The run's closing lines, the cause last: it is what a user reads first."""
        self.logger.info("stopped: %s", self.summary())
        if signum is not None:
            self.logger.warning(
                "target-posthog stopped on %s; %s",
                signal.Signals(signum).name,
                self.resume_point(),
            )
        else:
            self.logger.error("%s; %s", cause, self.resume_point())

    def resume_point(self) -> str:
        """Where the next run starts, in words: from the last STATE this run emitted, or an
        earlier one: Meltano, when it is being stopped too, drops the target's last lines
        unread (meltano 4.4 cancels its reader as soon as the target exits)."""
        if self.dry_run:
            return "dry run: nothing sent, no bookmark moved"
        state = self._last_state_emitted
        if state is None:
            return "the next run resumes where this one started (no new STATE was confirmed)"
        where = bookmarks_text(state) or "the last STATE emitted"
        return (
            f"the next run resumes from {where} or earlier (the last STATE emitted; "
            "`meltano state get` shows the one stored)"
        )

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        """Record the signal; the reader stops at the next line (see reader.py).

        This runs on the main thread between any two bytecodes, possibly inside code that
        holds a lock, even inside its own earlier run (a second Ctrl-C): it must take no
        lock, or it waits forever. `_stopping.set()` takes the Event's lock, which the main
        thread holds while it sets that Event itself (close(), abandon()); so the handler
        only writes a byte to a pipe, and a helper thread sets `_stopping`.
        """
        reader = getattr(self, "message_reader", None)
        wake = getattr(self, "_signal_pipe_write", None)
        if not isinstance(reader, FastSingerReader) or wake is None:
            raise SystemExit(128 + signum)  # not wired up yet: nothing to settle
        os.write(wake, b"\0")  # retries and throttle waits end as soon as it is read
        reader.shutdown.request(signum)

    def _stop_on_signal(self, read_end: int) -> None:
        """The helper thread: a byte from the signal handler sets `_stopping`."""
        os.read(read_end, 1)
        self._stopping.set()

    def _count_retry(self, problem: str) -> None:
        self._retries += 1
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
        delivery = self.delivery
        elapsed = max(time.monotonic() - self._started, 1e-9)
        client = self.client
        letters = self.dead_letters
        repeats = f", {letters.already_in_file} already there" if letters.already_in_file else ""
        reasons = f": {letters.reasons()}" if letters.count else ""
        set_aside = self.set_aside
        set_aside_text = set_aside.describe()
        if self.dry_run:
            return (
                f"dry run: nothing sent; {delivery.events_sent} events and "
                f"{delivery.aliases_sent} aliases written as payloads to "
                f"{self.config['dry_run_path']}, {letters.count} dead-lettered"
                f" ({letters.file.path}{repeats}){reasons}, {set_aside_text}"
            )
        return (
            f"{delivery.events_sent} events sent ({delivery.events_sent / elapsed:.0f}/s), "
            f"{delivery.aliases_sent} aliases, {self.profiles.person_updates_sent} person and "
            f"{self.profiles.group_updates_sent} group updates, {letters.count} dead-lettered"
            f" ({letters.file.path}{repeats}){reasons}, {set_aside_text}, {self._retries} retries, "
            f"{client.requests_sent if client else 0} requests, "
            f"{self.registry.shared_device_pairs} shared-device conflicts (not aliased), "
            f"{self.registry.colliding_ids} colliding user/device ids (kept apart)"
        )

    def counts(self) -> Counts:
        delivery = self.delivery
        return Counts(
            received=delivery.received,
            events_sent=delivery.events_sent,
            aliases_sent=delivery.aliases_sent,
            updates_sent=self.profiles.person_updates_sent + self.profiles.group_updates_sent,
            dead_letters=self.dead_letters.count,
        )

    def _report_progress(self) -> None:
        progress = Progress(self.config.get("max_events_per_minute"))
        while not self._stopping.wait(PROGRESS_INTERVAL_SECONDS):
            line = progress.line(
                self.counts(),
                self.delivery.in_flight,
                bookmark=bookmarks_text(self._last_checkpoint),
            )
            self.logger.info(
                "progress%s: %s", " (dry run: nothing sent)" if self.dry_run else "", line
            )


def _not_sdk_noise(record: logging.LogRecord) -> bool:
    """The SDK says this at every start, under Meltano always (it passes a config file)."""
    return record.msg != "Skipping parse of env var settings..."


logging.getLogger(TargetPostHog.name).addFilter(_not_sdk_noise)


def write_stdout(data: bytes) -> None:
    """All of `data` on stdout, in order, even when a write to the pipe takes only part of it.

    That happens when the process is stopped and continued mid-write (SIGSTOP/SIGCONT, a
    laptop's sleep) and the line is larger than the pipe's atomic size (4 KiB): Python 3.11's
    buffered stdout was measured mangling such STATE lines; os.write calls that carry on from
    where the last one stopped do not.
    """
    sys.stdout.flush()  # anything written through the text layer goes first
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # stdout replaced in-process (tests)
        sys.stdout.write(data.decode())
        sys.stdout.flush()
        return
    with memoryview(data) as view:
        written = 0
        while written < len(view):
            written += os.write(fd, view[written:])


def config_problems(config: dict[str, Any], known: set[str]) -> list[str]:
    """Start-up checks a JSON schema cannot express; each a line the user can act on."""
    problems = [
        f"unknown setting {key!r} (known: {', '.join(sorted(known))})"
        for key in sorted(set(config) - known)
    ]
    api_key = config.get("api_key")
    if isinstance(api_key, str) and not api_key.strip():
        problems.append("api_key is empty: set the PostHog project API key (phc_...)")
    host = config.get("host", "https://us.i.posthog.com")
    if isinstance(host, str):
        parts = urlsplit(host)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(f"host {host!r} is not a URL like https://us.i.posthog.com")
        elif parts.scheme != "https" and parts.hostname not in _LOCAL_HOSTS:
            problems.append(f"host {host!r} must use https (plain http only for localhost)")
    return problems


if __name__ == "__main__":
    TargetPostHog.cli()
