"""Benchmark: a STATE after every export hour (issue 16) vs one per window, side by side, one run.

    .venv/bin/python -m benchmarks.checkpoints             # dense and sparse hours, tap | target
    .venv/bin/python -m benchmarks.checkpoints --meltano   # also `meltano run`, both ways

The same export, stand-ins and settings run twice: once as the tap now runs (a STATE after every
hour read in full, and at each window's end), once as it ran before (a STATE at each window's end
only; benchmarks/window_states_only makes the tap read each window as one piece). Two shapes of
data: dense hours (about 14,000 events each, far more than a 1,000-event batch) and sparse hours
(100 events each: ten hourly STATEs per batch, the case where a STATE that cut batches short or
piled up in memory would show). What matters is the ratio of each pair, measured in one run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.run import (
    AMPLITUDE_KEY,
    AMPLITUDE_SECRET,
    BIN,
    POSTHOG_KEY,
    START,
    measured,
    mib,
    read_usage,
    tap_config,
    write_json,
)
from tests.meltano_harness import JOB, REPO_ROOT, MeltanoProject, tap_settings, target_settings
from tests.testbed.amplitude import AmplitudeStandIn
from tests.testbed.generator import ExportSpec, ExportStore
from tests.testbed.posthog import PostHogStandIn

WINDOW_STATES_ONLY = Path(__file__).with_name("window_states_only")
SWITCH = "AMP2PH_BENCH_WINDOW_STATES_ONLY"
MODES = ("per window (before)", "per hour (now)")
ABBA = (MODES[0], MODES[1], MODES[1], MODES[0])


@dataclass
class Run:
    shape: str
    mode: str
    events: int
    seconds: float
    requests: int
    states_out: int  # STATE lines the target wrote (what Meltano stores, one write each)
    tap_rss: int | None = None
    target_rss: int | None = None

    @property
    def rate(self) -> float:
        return self.events / self.seconds


def mean_of(runs: Sequence[Run]) -> Run:
    """Mean seconds; the largest peak RSS and STATE count (they barely vary)."""
    first = runs[0]
    return Run(
        first.shape,
        first.mode,
        first.events,
        sum(r.seconds for r in runs) / len(runs),
        max(r.requests for r in runs),
        max(r.states_out for r in runs),
        max(r.tap_rss or 0 for r in runs) or None,
        max(r.target_rss or 0 for r in runs) or None,
    )


def mode_env(mode: str) -> dict[str, str]:
    """The environment that makes the tap run in `mode` (see window_states_only/)."""
    env = {k: v for k, v in os.environ.items() if k != SWITCH}
    if mode == MODES[0]:
        path = [str(WINDOW_STATES_ONLY), os.environ.get("PYTHONPATH", "")]
        env.update({SWITCH: "1", "PYTHONPATH": os.pathsep.join(filter(None, path))})
    return env


def target_env(arenas: int | None) -> dict[str, str]:
    """The target's environment: with `arenas` (--malloc-arenas), glibc's arena limit set by
    hand (the target then leaves it: target_posthog/allocator.py), to compare with its cap."""
    env = dict(os.environ)
    if arenas is not None:
        env["MALLOC_ARENA_MAX"] = str(arenas)
    return env


@contextlib.contextmanager
def switch_in_meltano_tap() -> Iterator[None]:
    """Meltano drops PYTHONPATH for its plugins: a `.pth` file in the tap's Meltano virtualenv
    puts window_states_only/ on its path for the benchmark's duration (the switch stays off
    unless SWITCH is set)."""
    (site,) = (REPO_ROOT / ".meltano" / "extractors" / "tap-amplitude" / "venv").glob(
        "lib/python*/site-packages"
    )
    pth = site / "zz_amp2ph_bench_window_states_only.pth"
    pth.write_text(f"{WINDOW_STATES_ONLY}\n")
    try:
        yield
    finally:
        pth.unlink(missing_ok=True)


def run_pipeline(
    workdir: Path,
    store: ExportStore,
    shape: str,
    mode: str,
    generated: set[str],
    arenas: int | None = None,
    events_per_minute: int | None = None,
) -> Run:
    """`tap-amplitude | target-posthog` into the PostHog stand-in (0 ms answers)."""
    # Each run its own registry: a registry serves one PostHog project (each stand-in's URL).
    tag = f"{shape}-{MODES.index(mode)}-{time.monotonic_ns()}"
    with (
        AmplitudeStandIn(store, api_key=AMPLITUDE_KEY, secret_key=AMPLITUDE_SECRET) as amplitude,
        PostHogStandIn(api_key=POSTHOG_KEY, keep_events=False) as posthog,
    ):
        target_config = write_json(
            workdir / f"target-{tag}.json",
            {
                "api_key": POSTHOG_KEY,
                "host": posthog.url,
                "concurrency": 16,
                **({"max_events_per_minute": events_per_minute} if events_per_minute else {}),
                "alias_registry": str(workdir / f"aliases-{tag}.sqlite"),
                "dead_letter_path": str(workdir / f"dead-letter-{tag}.jsonl"),
            },
        )
        tap_rss, target_rss = workdir / "tap.rss", workdir / "target.rss"
        states = workdir / f"states-{tag}.jsonl"
        with (
            (workdir / f"tap-{tag}.log").open("wb") as tap_log,
            (workdir / f"target-{tag}.log").open("wb") as target_log,
            states.open("wb") as states_out,
        ):
            started = time.perf_counter()
            tap_args = ["--config", str(tap_config(workdir, amplitude))]
            tap = subprocess.Popen(
                measured(tap_rss, str(BIN / "tap-amplitude"), *tap_args),
                stdout=subprocess.PIPE,
                stderr=tap_log,
                env=mode_env(mode),
            )
            target = subprocess.Popen(
                measured(target_rss, str(BIN / "target-posthog"), "--config", str(target_config)),
                env=target_env(arenas),
                stdin=tap.stdout,
                stdout=states_out,
                stderr=target_log,
            )
            assert tap.stdout is not None
            tap.stdout.close()
            if target.wait() != 0 or tap.wait() != 0:
                logs = b"".join(
                    (workdir / f"{name}-{tag}.log").read_bytes()[-1500:]
                    for name in ("tap", "target")
                )
                raise SystemExit(
                    f"pipeline failed ({shape}, {mode}):\n{logs.decode(errors='replace')}"
                )
            seconds = time.perf_counter() - started
        delivered = len(posthog.accepted_uuids() & generated)
        if delivered != len(generated):
            raise SystemExit(f"{len(generated) - delivered} events lost ({shape}, {mode})")
        return Run(
            shape,
            mode,
            delivered,
            seconds,
            len(posthog.requests),
            sum(1 for line in states.read_bytes().splitlines() if line.strip()),
            read_usage(tap_rss)[0],
            read_usage(target_rss)[0],
        )


def run_meltano(
    workdir: Path, store: ExportStore, shape: str, mode: str, generated: set[str], n: int
) -> Run:
    """`meltano run tap-amplitude target-posthog` (prod environment), Meltano storing each STATE
    the target writes in its system database (SQLite), start-up included."""
    if not (REPO_ROOT / ".meltano" / "loaders" / "target-posthog").is_dir():
        raise SystemExit("--meltano needs the plugins installed: .venv/bin/meltano install")
    out = workdir / f"meltano-{shape}-{n}"
    out.mkdir()
    with (
        AmplitudeStandIn(store, api_key=AMPLITUDE_KEY, secret_key=AMPLITUDE_SECRET) as amplitude,
        PostHogStandIn(api_key=POSTHOG_KEY, keep_events=False) as posthog,
    ):
        end = START + dt.timedelta(days=800)
        settings = {
            **tap_settings(
                amplitude.url, START, end, api_key=AMPLITUDE_KEY, secret_key=AMPLITUDE_SECRET
            ),
            **target_settings(posthog.url, out, api_key=POSTHOG_KEY),
            "TARGET_POSTHOG_CONCURRENCY": "16",
        }
        project = MeltanoProject(workdir=out, settings=settings)
        env = project.env({SWITCH: "1"} if mode == MODES[0] else {})
        started = time.perf_counter()
        result = subprocess.run(
            project.command("run", *JOB),
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
        output = result.stdout + result.stderr
        if result.returncode != 0:
            raise SystemExit(f"meltano run failed ({shape}, {mode}):\n{output[-3000:]}")
        delivered = len(posthog.accepted_uuids() & generated)
        if delivered != len(generated):
            raise SystemExit(f"{len(generated) - delivered} events lost ({shape}, {mode})")
        return Run(
            f"{shape}, meltano run",
            mode,
            delivered,
            seconds,
            len(posthog.requests),
            output.count("Incremental state has been updated"),
        )


def print_rows(runs: Sequence[Run]) -> None:
    print(
        "\n| data | STATE | events | seconds | events/s | requests | STATEs stored | tap RSS "
        "| target RSS |\n|---|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    for r in runs:
        print(
            f"| {r.shape} | {r.mode} | {r.events:,} | {r.seconds:.1f} | {r.rate:,.0f} | "
            f"{r.requests} | {r.states_out} | {mib(r.tap_rss)} | {mib(r.target_rss)} |"
        )


def print_ratios(runs: Sequence[Run]) -> None:
    print()
    for before, now in zip(runs[::2], runs[1::2], strict=True):
        line = (
            f"- {now.shape}: events/s per hour / per window = {now.rate / before.rate:.2f}x; "
            f"requests {now.requests} vs {before.requests}; STATEs stored {now.states_out} vs "
            f"{before.states_out}"
        )
        if now.target_rss and before.target_rss:
            line += f"; target peak RSS {now.target_rss / before.target_rss:.2f}x"
        extra = now.states_out - before.states_out
        if now.target_rss is None and extra > 0:
            cost = (now.seconds - before.seconds) / extra * 1000
            line += f"; {cost:+.1f} ms per extra STATE Meltano stored"
        print(line)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=500_000, help="dense: events")
    parser.add_argument("--hours", type=int, default=36, help="dense: hours")
    parser.add_argument("--sparse-events", type=int, default=300_000)
    parser.add_argument("--sparse-hours", type=int, default=3_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--meltano", action="store_true", help="also `meltano run`, sparse data")
    parser.add_argument(
        "--rounds", type=int, default=1, help="before, now, now, before: this many times"
    )
    parser.add_argument(
        "--max-events-per-minute",
        type=int,
        help="the target's speed limit (as agreed with PostHog); default: none (CPU-bound)",
    )
    parser.add_argument(
        "--malloc-arenas",
        type=int,
        help="the target's MALLOC_ARENA_MAX (16 is glibc's default on 2 cores; default: the "
        "target's own cap of 2)",
    )
    parser.add_argument(
        "--shapes", nargs="+", choices=("dense", "sparse"), default=["dense", "sparse"]
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    cpu = platform.processor() or platform.machine()
    print(
        f"# {dt.datetime.now(dt.UTC).date()} · {os.cpu_count()} cores · {cpu} · "
        f"Python {platform.python_version()}"
    )
    shapes = {
        f"dense: {args.events:,} events over {args.hours} h": (args.events, args.hours),
        f"sparse: {args.sparse_events:,} events over {args.sparse_hours} h": (
            args.sparse_events,
            args.sparse_hours,
        ),
    }
    shapes = {name: size for name, size in shapes.items() if name.split(":")[0] in args.shapes}
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="amp2ph-checkpoints-") as tmp:
        workdir = Path(tmp)
        for index, (shape, (events, hours)) in enumerate(shapes.items()):
            spec = ExportSpec(start=START, hours=hours, events=events, seed=args.seed)
            store = ExportStore.build(workdir / f"export-{index}", spec)
            generated = store.uuids()
            print(f"{shape}: {len(store.hours())} hours with data")
            # Before, now, now, before: a machine that speeds up or slows down during the run
            # weighs on both sides alike; each side's figure is the mean of its runs.
            pair = []
            for mode in ABBA * args.rounds:
                pair.append(
                    run_pipeline(
                        workdir,
                        store,
                        shape.split(":")[0],
                        mode,
                        generated,
                        args.malloc_arenas,
                        args.max_events_per_minute,
                    )
                )
                print(f"    run {len(pair)}, {mode}: {pair[-1].seconds:.1f} s", flush=True)
            for mode in MODES:
                runs.append(mean_of([r for r in pair if r.mode == mode]))
                print(f"  {mode}: {runs[-1].rate:,.0f} events/s")
            if args.meltano and index == len(shapes) - 1:
                name = shape.split(":")[0]
                with switch_in_meltano_tap():
                    pair = []
                    for n, mode in enumerate(ABBA * args.rounds):
                        pair.append(run_meltano(workdir, store, name, mode, generated, n))
                        print(f"    meltano run {n + 1}, {mode}: {pair[-1].seconds:.1f} s")
                for mode in MODES:
                    runs.append(mean_of([r for r in pair if r.mode == mode]))
                    print(f"  meltano run, {mode}: {runs[-1].seconds:.1f} s")
    print_rows(runs)
    print_ratios(runs)


if __name__ == "__main__":
    main()
