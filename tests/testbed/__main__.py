"""Rehearse a migration against the stand-ins: ``python -m tests.testbed --help``.

Generates an Amplitude export (or serves an existing export folder), starts the Amplitude
stand-in (Export API and Dashboard REST API) and the PostHog stand-in (capture and query API)
on 127.0.0.1, prints the settings that point the plugins and the verification at them (the
lines to put in `.env`), and serves until Ctrl-C or SIGTERM. Every
`--report-seconds`, and at the end, it says what the PostHog stand-in holds: events, distinct
uuids, aliases, persons and groups, built by PostHog's rules (tests/testbed/persons.py); at the
end it also writes the persons and groups with their properties to
`<--output>/posthog-persons-and-groups.json`.

Faults are injected before serving, FIFO, one per request to the endpoint: ``--posthog-fault
503*3`` answers the next three batch requests 503; kinds are an HTTP status (``429``,
``503`` ...), ``drop``, ``lose_ack``, ``truncate``, ``stall:<s>`` and ``delay:<s>`` (see
faults.py). docs/rehearsal.md walks through the README's real-migration steps with it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from tests.testbed.amplitude import AmplitudeStandIn
from tests.testbed.events import ExportSpec
from tests.testbed.faults import Fault
from tests.testbed.posthog import PostHogStandIn
from tests.testbed.store import ExportStore

AMPLITUDE_KEY = "amp-test-key"
AMPLITUDE_SECRET = "amp-test-secret"
POSTHOG_KEY = "phc_test_key"
PERSONAL_KEY = "phx_test_personal_key"  # the query API stand-in's (tests/testbed/hogql.py)
PROJECT_ID = 4242
PEOPLE_FILE = "posthog-persons-and-groups.json"  # under --output, written when it stops
_TIMED_FAULTS = {"stall": Fault.stall, "delay": Fault.delay}
_PLAIN_FAULTS = {"drop": Fault.drop, "lose_ack": Fault.lose_ack, "truncate": Fault.truncate}
_EXPORT_ONLY_FAULTS = ("stall", "truncate")  # the PostHog stand-in models the others only


def parse_fault(spec: str) -> tuple[Fault, int]:
    """``KIND[:SECONDS][*TIMES]`` -> (fault, times). Raises ValueError naming the spec."""
    kind, _, times_text = spec.partition("*")
    name, _, argument = kind.partition(":")
    try:
        times = int(times_text) if times_text else 1
        if name.isdigit():
            fault = Fault.status(int(name), float(argument) if argument else None)
        elif name in _TIMED_FAULTS:
            fault = _TIMED_FAULTS[name](float(argument))
        elif name in _PLAIN_FAULTS and not argument:
            fault = _PLAIN_FAULTS[name]()
        else:
            raise ValueError(name)
    except ValueError:
        kinds = ", ".join(["<status>[:<retry-after s>]", *_PLAIN_FAULTS, "stall:<s>", "delay:<s>"])
        raise ValueError(f"fault {spec!r}: write KIND[*TIMES], KIND one of {kinds}") from None
    if times < 1:
        raise ValueError(f"fault {spec!r}: TIMES must be at least 1")
    if fault.kind == "status" and not 400 <= (fault.code or 0) <= 599:
        raise ValueError(f"fault {spec!r}: a status fault is an error status, 400 to 599")
    if (fault.seconds or 0) < 0 or (fault.retry_after or 0) < 0:
        raise ValueError(f"fault {spec!r}: seconds cannot be negative")
    return fault, times


def settings_lines(
    amplitude: AmplitudeStandIn, posthog: PostHogStandIn, store: ExportStore, output: Path
) -> str:
    """The `.env` lines that point the plugins at the stand-ins and cover the whole export,
    with the registry and dead letters in `output` (a rehearsal's registry must never be the
    real migration's: it records the PostHog project it serves), and the verification's
    (`meltano invoke target-posthog:verify`): the query API stand-in's personal key, project
    id and URL, and the Dashboard API stand-in's time zone. The verification asks the
    Dashboard API with the tap's keys and URL (meltano.yml maps them)."""
    first, last = store.hours()[0], store.hours()[-1]
    return "\n".join(
        [
            f"TAP_AMPLITUDE_API_URL={amplitude.url}",
            f"TAP_AMPLITUDE_API_KEY={amplitude.api_key}",
            f"TAP_AMPLITUDE_SECRET_KEY={amplitude.secret_key}",
            f"TAP_AMPLITUDE_START_DATE={first.isoformat()}",
            f"TAP_AMPLITUDE_END_DATE={(last + timedelta(hours=1)).isoformat()}",
            f"TARGET_POSTHOG_HOST={posthog.url}",
            f"TARGET_POSTHOG_API_KEY={posthog.api_key}",
            f"TARGET_POSTHOG_ALIAS_REGISTRY={output / 'alias-registry.sqlite'}",
            f"TARGET_POSTHOG_DEAD_LETTER_PATH={output / 'dead-letter.jsonl'}",
            f"TARGET_POSTHOG_PERSONAL_API_KEY={posthog.query_api.personal_api_key}",
            f"TARGET_POSTHOG_PROJECT_ID={posthog.query_api.project_id}",
            f"TARGET_POSTHOG_APP_HOST={posthog.url}",
            f"TARGET_POSTHOG_AMPLITUDE_TIME_ZONE={amplitude.dashboard.time_zone}",
        ]
    )


def write_people(posthog: PostHogStandIn, path: Path) -> str:
    """The stand-in's persons and groups with their properties, as JSON in `path` (persons by
    their smallest distinct_id, groups by type and key); one line naming it and the counts."""
    people = posthog.people
    persons = sorted(
        (
            {
                "distinct_ids": sorted(person.distinct_ids),
                "is_identified": person.is_identified,
                "properties": person.properties,
            }
            for person in people.persons()
        ),
        key=lambda person: person["distinct_ids"],
    )
    groups = [
        {"group_type": kind, "group_key": key, "properties": properties}
        for (kind, key), properties in sorted(people.groups().items())
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        orjson.dumps(
            {"persons": persons, "groups": groups}, option=orjson.OPT_INDENT_2, default=str
        )
    )
    return f"{len(persons):,} persons and {len(groups):,} groups with their properties in {path}"


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.testbed", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--events", type=int, default=20_000, help="events to generate (20,000)")
    parser.add_argument("--hours", type=int, default=48, help="hours they span (48)")
    parser.add_argument("--start", default="2024-03-01T00:00:00+00:00", help="first hour (UTC)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--export", type=Path, help="serve this export folder instead")
    # Fixed by default: the registry records the PostHog host it serves, port included, so a
    # rehearsal restarted on other ports would be refused as another project.
    parser.add_argument("--amplitude-port", type=int, default=8901, help="8901; 0: any free")
    parser.add_argument("--posthog-port", type=int, default=8902, help="8902; 0: any free")
    parser.add_argument(
        "--posthog-latency", type=float, default=0.0, help="seconds a request takes"
    )
    parser.add_argument(
        "--amplitude-time-zone",
        default="UTC",
        help="the time zone the Dashboard API stand-in's charts count in (UTC)",
    )
    parser.add_argument("--posthog-fault", action="append", default=[], metavar="KIND[*TIMES]")
    parser.add_argument("--amplitude-fault", action="append", default=[], metavar="KIND[*TIMES]")
    parser.add_argument("--env-file", type=Path, help="also write the settings lines there")
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("output/rehearsal"),
        help="where the settings put the registry and dead letters (output/rehearsal)",
    )
    parser.add_argument("--report-seconds", type=float, default=10.0)
    return parser.parse_args(argv)


class _ServeError(Exception):
    """What the user asked for cannot be served; the message is one line."""


def _serve(
    args: argparse.Namespace,
    start: datetime,
    scratch: Path,
    posthog_faults: list[tuple[Fault, int]],
    amplitude_faults: list[tuple[Fault, int]],
    stop: threading.Event,
) -> None:
    """Serve both stand-ins until `stop` is set; _ServeError for an export that cannot be read,
    a port in use or an env file that cannot be written."""
    try:
        if args.export:
            store = ExportStore.open(args.export)
        else:
            spec = ExportSpec(start=start, hours=args.hours, events=args.events, seed=args.seed)
            store = ExportStore.build(scratch, spec)
    except OSError as exc:
        raise _ServeError(f"cannot serve {args.export} ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise _ServeError(f"cannot serve {args.export}: {exc}") from None
    amplitude = AmplitudeStandIn(store, api_key=AMPLITUDE_KEY, secret_key=AMPLITUDE_SECRET)
    amplitude.dashboard.time_zone = args.amplitude_time_zone
    posthog = PostHogStandIn(
        api_key=POSTHOG_KEY,
        latency=args.posthog_latency,
        personal_api_key=PERSONAL_KEY,
        project_id=PROJECT_ID,
    )
    amplitude.port, posthog.port = args.amplitude_port, args.posthog_port
    for fault, times in posthog_faults:
        posthog.inject(fault, times)
    for fault, times in amplitude_faults:
        amplitude.inject(fault, times)
    try:
        amplitude.start()
        posthog.start()
    except OSError as exc:
        amplitude.stop()
        raise _ServeError(
            f"cannot listen on 127.0.0.1 port {args.amplitude_port} or {args.posthog_port} "
            f"({exc.strerror or exc}); choose --amplitude-port / --posthog-port"
        ) from None
    try:
        lines = settings_lines(amplitude, posthog, store, args.output)
        if args.env_file:  # stand-in keys only, but kept private as real ones would be
            try:
                args.env_file.touch(mode=0o600)
                args.env_file.chmod(0o600)
                args.env_file.write_text(lines + "\n")
            except OSError as exc:
                raise _ServeError(
                    f"cannot write --env-file {args.env_file} ({exc.strerror or exc})"
                ) from None
        print(f"{len(store.uuids()):,} events served; settings:\n{lines}", flush=True)
        print("serving until Ctrl-C", flush=True)
        while not stop.wait(args.report_seconds):
            print(posthog.holdings(), flush=True)
        try:
            print(write_people(posthog, args.output / PEOPLE_FILE), flush=True)
        except OSError as exc:
            print(f"cannot write {args.output / PEOPLE_FILE} ({exc.strerror or exc})", flush=True)
        print(f"stopped; {posthog.holdings()}", flush=True)
    finally:
        posthog.stop()
        amplitude.stop()


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit code (0, or 2 for bad arguments)."""
    args = _arguments(argv)
    try:
        posthog_faults = [parse_fault(spec) for spec in args.posthog_fault]
        for (fault, _), spec in zip(posthog_faults, args.posthog_fault, strict=True):
            if fault.kind in _EXPORT_ONLY_FAULTS:
                raise ValueError(
                    f"--posthog-fault {spec!r}: the PostHog stand-in serves a status, drop, "
                    f"lose_ack and delay; {fault.kind} is an Export API fault (--amplitude-fault)"
                )
        amplitude_faults = [parse_fault(spec) for spec in args.amplitude_fault]
        for (fault, _), spec in zip(amplitude_faults, args.amplitude_fault, strict=True):
            if fault.kind == "lose_ack":
                raise ValueError(
                    f"--amplitude-fault {spec!r}: the Export API stand-in serves a status, drop, "
                    "delay, truncate and stall; lose_ack is a PostHog fault (--posthog-fault)"
                )
        start = datetime.fromisoformat(args.start).astimezone(UTC)
        for name in ("events", "hours"):
            if not args.export and getattr(args, name) < 1:
                raise ValueError(f"--{name} must be at least 1, not {getattr(args, name)}")
        ZoneInfo(args.amplitude_time_zone)
    except ZoneInfoNotFoundError:
        print(f"testbed: --amplitude-time-zone {args.amplitude_time_zone!r} is not a time zone "
              "name (e.g. UTC, America/Los_Angeles)", file=sys.stderr)  # fmt: skip
        return 2
    except ValueError as exc:
        print(f"testbed: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    with tempfile.TemporaryDirectory(prefix="testbed-export-") as scratch:
        try:
            _serve(args, start, Path(scratch), posthog_faults, amplitude_faults, stop)
        except _ServeError as exc:
            print(f"testbed: {exc}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
