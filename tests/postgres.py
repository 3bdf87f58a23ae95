"""A real PostgreSQL server for the tests, from the `pgserver` wheel requirements-dev.txt pins.

`pgserver` ships PostgreSQL's own binaries (initdb, postgres) inside a PyPI wheel, so a fresh
machine with nothing but Python gets a server from `pip install -r requirements-dev.txt`; the
binaries are found inside that package, never on PATH, so a machine's own PostgreSQL is never
used by accident. We drive the binaries ourselves (not pgserver's Python API) to get what a
production server looks like: TCP on 127.0.0.1 at a free port, password (SCRAM) auth, no Unix
socket, a temporary data directory removed at the end.

PostgreSQL refuses to run as root, so as root the server runs as the unprivileged `nobody`
user, owning its data directory; where `nobody` cannot reach the binaries (a checkout under a
0700 home), they are first copied beside the data directory.

Use: the session-scoped `postgres_server` fixture in tests/conftest.py, and `postgres_url` for
a fresh database per test. The password is distinctive (`PASSWORD_MARK` + random), so a test
can search any output for a leak with a plain substring search.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

PASSWORD_MARK = "pgpw-never-print-"
_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 30.0
_UNPRIVILEGED_USER = "nobody"


class PostgresUnavailableError(RuntimeError):
    """The server could not be installed or started (the message says why)."""


def pgserver_binaries() -> Path:
    """The `bin` folder of the PostgreSQL build inside the installed `pgserver` wheel."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresUnavailableError(
            "the pgserver package is not installed: pip install -r requirements-dev.txt"
        )
    binaries = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (binaries / "postgres").is_file():
        raise PostgresUnavailableError(f"pgserver has no PostgreSQL build in {binaries}")
    return binaries


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """One PostgreSQL server on 127.0.0.1, started by `start()` and removed by `stop()`.

    `url` is the superuser's URL (postgresql://postgres:<password>@127.0.0.1:<port>/postgres);
    `create_database()` makes a new empty database and returns its URL.
    """

    def __init__(self) -> None:
        self.password = PASSWORD_MARK + secrets.token_hex(8)
        self.port = 0
        self.root = Path(tempfile.mkdtemp(prefix="registry-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._names = itertools.count(1)
        self._run_as: str | None = _UNPRIVILEGED_USER if os.geteuid() == 0 else None
        self.binaries = pgserver_binaries()

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """initdb with a password, then the server on a free port; returns once it answers."""
        try:
            self._prepare_root()
            self._initdb()
            for _ in range(3):  # another process may take the free port before we bind it
                self.port = _free_port()
                if self._launch():
                    return
            raise PostgresUnavailableError(f"PostgreSQL did not start; see {self.log}")
        except BaseException:
            self.stop()
            raise

    def _prepare_root(self) -> None:
        if self._run_as is None:
            return
        account = pwd.getpwnam(self._run_as)
        self.root.chmod(0o755)
        if not self._reachable_by_run_as(self.binaries / "postgres"):
            # The binaries find their libraries at $ORIGIN/../../../pgserver.libs: keep that.
            package = self.binaries.parent.parent
            copy = self.root / "site" / package.name
            shutil.copytree(package / "pginstall", copy / "pginstall", symlinks=True)
            libraries = package.with_name(f"{package.name}.libs")
            shutil.copytree(libraries, copy.with_name(libraries.name), symlinks=True)
            self.binaries = copy / "pginstall" / "bin"
        self.data.mkdir(mode=0o700)
        os.chown(self.data, account.pw_uid, account.pw_gid)

    def _reachable_by_run_as(self, program: Path) -> bool:
        try:
            result = subprocess.run(
                [str(program), "--version"], user=self._run_as, capture_output=True, timeout=30
            )
        except OSError:
            return False
        return result.returncode == 0

    def _initdb(self) -> None:
        password_file = self.root / "pwfile"
        password_file.write_text(self.password + "\n")
        if self._run_as is not None:
            account = pwd.getpwnam(self._run_as)
            os.chown(password_file, account.pw_uid, account.pw_gid)
        password_file.chmod(0o600)
        try:
            result = subprocess.run(
                [
                    str(self.binaries / "initdb"),
                    "--pgdata",
                    str(self.data),
                    "--username",
                    "postgres",
                    "--pwfile",
                    str(password_file),
                    "--auth",
                    "scram-sha-256",
                    "--encoding",
                    "UTF8",
                    "--locale",
                    "C",
                    "--no-sync",  # a throwaway test cluster: durability of initdb's files is moot
                ],
                user=self._run_as,
                env=_clean_environment(),
                capture_output=True,
                timeout=120,
            )
        finally:
            password_file.unlink()
        if result.returncode != 0:
            raise PostgresUnavailableError(
                f"initdb failed ({result.returncode}): {result.stderr.decode(errors='replace')}"
            )

    def _launch(self) -> bool:
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    str(self.binaries / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "unix_socket_directories=",
                    "-c",
                    "fsync=off",  # tests check behaviour, not durability of the disk
                    "-c",
                    "max_connections=200",
                ],
                user=self._run_as,
                env=_clean_environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                return False
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.1)
        self._terminate()
        return False

    def create_database(self, name: str | None = None) -> str:
        """A new empty database (named `name`, else test_<n>); returns its URL."""
        database = name or f"test_{next(self._names)}"
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{database}"')
        return self.url_for(database)

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then the temporary folder is removed."""
        self._terminate()
        shutil.rmtree(self.root, ignore_errors=True)

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(2)  # SIGINT: PostgreSQL's "fast" shutdown
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=_STOP_TIMEOUT_S)


def _clean_environment() -> dict[str, str]:
    """PostgreSQL's environment: no PG* variables of the caller, C locale."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    kept.update({"LC_ALL": "C", "LANG": "C"})
    return kept
