"""The stand-ins' command line (`python -m tests.testbed`), which a user rehearses with."""

from __future__ import annotations

import base64
import contextlib
import csv
import gzip
import shlex
import signal
import socket
import subprocess
import sys
import zipfile
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import orjson
import pytest
import requests

from tests.meltano_harness import MELTANO, REPO_ROOT, base_environment, install_plugins
from tests.testbed.__main__ import parse_fault
from tests.testbed.faults import Fault

pytestmark = pytest.mark.timeout(120)


def test_fault_specs_read_as_written_and_others_are_refused_in_one_line() -> None:
    assert parse_fault("503*3") == (Fault.status(503), 3)
    assert parse_fault("429:2") == (Fault.status(429, 2.0), 1)
    assert parse_fault("delay:1.5*2") == (Fault.delay(1.5), 2)
    assert parse_fault("drop") == (Fault.drop(), 1)
    for bad in ("boom", "drop:3", "503*0", "delay", "503*x", "200", "999", "delay:-5", "429:-1"):
        with pytest.raises(ValueError, match=rf"fault '{bad.replace('*', '[*]')}'"):
            parse_fault(bad)


def test_the_command_line_serves_both_stand_ins_until_ctrl_c(tmp_path: Path) -> None:
    env_file = tmp_path / "rehearsal.env"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.testbed", "--events", "300", "--hours", "3",
         "--env-file", str(env_file), "--report-seconds", "60", "--posthog-fault", "503*1",
         "--amplitude-port", "0", "--posthog-port", "0"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        said = []
        for line in process.stdout:
            said.append(line.rstrip("\n"))
            if line.startswith("serving until Ctrl-C"):
                break
        assert said[0] == "300 events served; settings:"
        settings = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        assert said[1:-1] == [f"{k}={v}" for k, v in settings.items()]
        assert settings["TAP_AMPLITUDE_START_DATE"] == "2024-03-01T00:00:00+00:00"
        assert settings["TAP_AMPLITUDE_END_DATE"] == "2024-03-01T03:00:00+00:00"
        assert settings["TARGET_POSTHOG_ALIAS_REGISTRY"] == "output/rehearsal/alias-registry.sqlite"
        assert env_file.stat().st_mode & 0o077 == 0

        key = settings["TAP_AMPLITUDE_API_KEY"] + ":" + settings["TAP_AMPLITUDE_SECRET_KEY"]
        export = requests.get(
            settings["TAP_AMPLITUDE_API_URL"] + "/api/2/export",
            params={"start": "20240301T00", "end": "20240301T02"},
            headers={"Authorization": "Basic " + base64.b64encode(key.encode()).decode()},
            timeout=30,
        )
        assert export.status_code == 200
        assert len(zipfile.ZipFile(BytesIO(export.content)).namelist()) == 3

        body = orjson.dumps({
            "api_key": settings["TARGET_POSTHOG_API_KEY"],
            "historical_migration": True,
            "batch": [{"event": "Opened App", "distinct_id": "user-1",
                       "uuid": "0190a8e4-0000-7000-8000-000000000001",
                       "timestamp": "2024-03-01T00:10:00Z", "properties": {}}],
        })  # fmt: skip
        url = settings["TARGET_POSTHOG_HOST"] + "/batch/"
        assert requests.post(url, data=body, timeout=30).status_code == 503  # the fault
        assert requests.post(url, data=body, timeout=30).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    people_file = REPO_ROOT / "output" / "rehearsal" / "posthog-persons-and-groups.json"
    assert out.splitlines()[-2:] == [
        f"1 persons and 0 groups with their properties in {people_file.relative_to(REPO_ROOT)}",
        "stopped; PostHog stand-in holds 1 events incl. 0 aliases (1 distinct uuids), 1 persons, "
        "0 groups; 2 batch requests",
    ]
    assert orjson.loads(people_file.read_bytes()) == {
        "persons": [{"distinct_ids": ["user-1"], "is_identified": False, "properties": {}}],
        "groups": [],
    }


def test_bad_arguments_fail_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.testbed", "--posthog-fault", "boom"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("testbed: fault 'boom': write KIND[*TIMES]")
    assert len(result.stderr.splitlines()) == 1
    result = subprocess.run(
        [sys.executable, "-m", "tests.testbed", "--amplitude-fault", "lose_ack"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (
        2,
        "testbed: --amplitude-fault 'lose_ack': the Export API stand-in serves a status, drop, "
        "delay, truncate and stall; lose_ack is a PostHog fault (--posthog-fault)\n",
    )
    # Faults only the Export API stand-in serves were accepted for PostHog and did nothing.
    for kind in ("stall:60*8", "truncate"):
        result = subprocess.run(
            [sys.executable, "-m", "tests.testbed", "--posthog-fault", kind],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 2
        assert result.stderr == (
            f"testbed: --posthog-fault {kind!r}: the PostHog stand-in serves a status, drop, "
            f"lose_ack and delay; {kind.split(':')[0]} is an Export API fault (--amplitude-fault)\n"
        )


def test_what_cannot_be_served_or_written_fails_in_one_line(tmp_path: Path) -> None:
    """Were tracebacks: an export folder that is not there or names an impossible hour, an env
    file that cannot be written, no events or hours to generate, a port in use."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    impossible = tmp_path / "impossible"  # a name no Amplitude export has: 30 February
    impossible.mkdir()
    (impossible / "123456_2024-02-30_5#0.json.gz").write_bytes(b"")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cases = {
            ("--export", str(tmp_path / "none")): (
                f"testbed: cannot serve {tmp_path / 'none'} (No such file or directory)"
            ),
            ("--export", str(tmp_path)): (
                f"testbed: cannot serve {tmp_path} (no Amplitude export members in {tmp_path})"
            ),
            ("--export", str(impossible)): (
                f"testbed: cannot serve {impossible}: 123456_2024-02-30_5#0.json.gz: its name "
                "gives no real hour (day is out of range for month); the Export API stand-in "
                "serves members by the hour in their names (tap-amplitude's export_path reads "
                "such a file)"
            ),
            ("--env-file", str(blocker / "x.env")): (
                f"testbed: cannot write --env-file {blocker / 'x.env'} (Not a directory)"
            ),
            ("--events", "0"): "testbed: --events must be at least 1, not 0",
            ("--hours", "-2"): "testbed: --hours must be at least 1, not -2",
            ("--amplitude-port", str(port)): (
                f"testbed: cannot listen on 127.0.0.1 port {port} or 0 (Address already in "
                "use); choose --amplitude-port / --posthog-port"
            ),
        }
        for arguments, line in cases.items():
            result = subprocess.run(
                [sys.executable, "-m", "tests.testbed", "--events", "20", "--hours", "1",
                 "--amplitude-port", "0", "--posthog-port", "0", *arguments],
                cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert (result.returncode, result.stderr) == (2, line + "\n"), arguments


def _rehearsal_commands() -> list[tuple[dict[str, str], list[str]]]:
    """docs/rehearsal.md's terminal 2 commands: (environment prefix, meltano arguments)."""
    text = (REPO_ROOT / "docs" / "rehearsal.md").read_text()
    block = text.split("## Terminal 2", 1)[1].split("```sh\n", 1)[1].split("\n```", 1)[0]
    commands = []
    for line in block.splitlines():
        if line.startswith("#"):
            continue
        words = shlex.split(line)
        prefix = dict(word.split("=", 1) for word in words[: words.index(".venv/bin/meltano")])
        commands.append((prefix, words[words.index(".venv/bin/meltano") + 1 :]))
    return commands


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_the_rehearsal_docs_steps_migrate_then_verify_against_the_stand_ins(
    tmp_path: Path,
) -> None:
    """A user following docs/rehearsal.md: terminal 1 as written (small, free ports, output in
    a scratch folder), then every terminal 2 command as written, the verification last."""
    install_plugins()
    env_file = tmp_path / ".env.rehearsal"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.testbed", "--events", "400", "--hours", "30",
         "--env-file", str(env_file), "--output", str(tmp_path / "out"), "--report-seconds",
         "600", "--amplitude-port", "0", "--posthog-port", "0"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("serving until Ctrl-C"):
                break
        environment = base_environment() | {
            "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}"
        }
        commands = _rehearsal_commands()
        assert [words[-1] for _, words in commands][-1] == "target-posthog:verify"
        results = []
        for prefix, words in commands:
            assert words[:2] == ["--env-file", ".env.rehearsal"], words
            done = subprocess.run(
                [str(MELTANO), "--env-file", str(env_file), *words[2:]],
                cwd=REPO_ROOT, env=environment | prefix, capture_output=True, text=True,
                timeout=300,
            )  # fmt: skip
            results.append(done)
            assert results[-1].returncode == 0, results[-1].stdout + results[-1].stderr
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    verified = results[-1]
    rows = list(csv.DictReader((tmp_path / "out" / "verification-day.csv").open()))
    *days, outside = [row["period"] for row in rows]
    assert days[-2:] == ["2024-03-01", "2024-03-02"]  # late uploads
    # Events dated before the range (generated late uploads) are one row, not days of their own.
    assert outside.startswith("event time outside 2024-03-01 .. 2024-03-03")
    assert {row["status"] for row in rows} == {"OK"}  # before: no verify step, no settings
    assert sum(int(row["read"]) for row in rows) == 400
    assert f"{len(rows)} rows: {len(rows)} OK, 0 explained" in verified.stderr


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda line: line[: line.rindex(b'"uuid":"') + 12], id="inside-the-uuid"),
        pytest.param(lambda line: line.rstrip(b"\n")[:-1], id="no-closing-brace-no-newline"),
        pytest.param(lambda line: line.rstrip(b"\n"), id="whole-but-no-newline"),
        pytest.param(None, id="gzip-stream-cut-short"),
    ],
)
def test_an_export_whose_last_line_is_half_written_is_served_as_given(
    tmp_path: Path, cut: Callable[[bytes], bytes] | None
) -> None:
    """`--export` of a folder whose last member ends in a half-written line (a download cut
    short): the stand-in starts and serves the member byte for byte, as Amplitude serves what
    it holds, so the tap's handling of dirty lines can be rehearsed (it crashed on start)."""
    export = tmp_path / "export"
    export.mkdir()
    sample = sorted((REPO_ROOT / "sample" / "amplitude-export").glob("*_2024-03-01_0#0.json.gz"))
    lines = gzip.decompress(sample[0].read_bytes()).splitlines(keepends=True)
    if cut is None:  # the file itself half written: its gzip stream ends early
        served = sample[0].read_bytes()[:-100]
        whole = 0
        with gzip.open(BytesIO(served)) as readable, contextlib.suppress(EOFError):
            for line in readable:
                whole += line.endswith(b"}\n")
    else:
        served = gzip.compress(b"".join(lines[:-1]) + cut(lines[-1]))
        whole = len(lines) - 1 + cut(lines[-1]).endswith(b"}")
    (export / sample[0].name).write_bytes(served)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.testbed", "--export", str(export), "--report-seconds",
         "60", "--amplitude-port", "0", "--posthog-port", "0", "--env-file",
         str(tmp_path / "x.env")],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first == f"{whole} events served; settings:\n", process.stderr
        for line in process.stdout:
            if line.startswith("serving until Ctrl-C"):
                break
        settings = dict(line.split("=", 1) for line in (tmp_path / "x.env").read_text().split())
        export_answer = requests.get(
            settings["TAP_AMPLITUDE_API_URL"] + "/api/2/export",
            params={"start": "20240301T00", "end": "20240301T00"},
            auth=(settings["TAP_AMPLITUDE_API_KEY"], settings["TAP_AMPLITUDE_SECRET_KEY"]),
            timeout=30,
        )
        assert export_answer.status_code == 200
        archive = zipfile.ZipFile(BytesIO(export_answer.content))
        [name] = archive.namelist()
        assert archive.read(name) == served  # as given, half line and all
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err
