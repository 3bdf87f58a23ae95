"""The tests' PostgreSQL server (tests/postgres.py) is real, private and cleaned up."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

from tests.postgres import PASSWORD_MARK, PostgresServer, pgserver_binaries

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[1]


def test_the_session_server_answers_sql_with_a_password(postgres_server, postgres_url):
    assert postgres_url.startswith(f"postgresql://postgres:{PASSWORD_MARK}")
    with psycopg.connect(postgres_url) as connection:
        connection.execute("CREATE TABLE t (k text PRIMARY KEY)")
        connection.execute("INSERT INTO t VALUES ('a'), ('b')")
        assert connection.execute("SELECT count(*) FROM t").fetchone() == (2,)
        # The server runs unprivileged (PostgreSQL refuses root), from pgserver's own build.
        assert connection.execute("SHOW server_version").fetchone()[0].startswith("16.")
        assert connection.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
    wrong = postgres_url.replace(postgres_server.password, "not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(wrong, connect_timeout=5)


def test_each_database_is_new_and_empty(postgres_server):
    first, second = postgres_server.create_database(), postgres_server.create_database()
    assert first != second
    with psycopg.connect(first) as connection:
        connection.execute("CREATE TABLE only_here (k int)")
    with psycopg.connect(second) as connection:
        tables = connection.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert tables == (0,)


def test_the_server_never_comes_from_path(tmp_path):
    """A fresh CI machine has no PostgreSQL of its own: with PATH holding nothing but
    Python, the server still starts (from the pgserver wheel), and stop() removes it."""
    script = textwrap.dedent(
        """
        import os, socket, sys
        import psycopg
        from tests.postgres import PostgresServer
        server = PostgresServer()
        server.start()
        with psycopg.connect(server.url) as connection:
            print(connection.execute("SHOW server_version").fetchone()[0])
        print(server.binaries)
        server.stop()
        print(os.path.exists(server.root))
        probe = socket.socket()
        print(probe.connect_ex(("127.0.0.1", server.port)) != 0)
        """
    )
    environment = {"PATH": str(tmp_path), "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=environment,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    version, binaries, root_left, port_closed = result.stdout.split()
    assert version.startswith("16.")
    assert "pgserver" in binaries and not binaries.startswith("/usr")
    assert (root_left, port_closed) == ("False", "True")


def test_binaries_are_the_wheels_own():
    binaries = pgserver_binaries()
    assert binaries.parts[-3:] == ("pgserver", "pginstall", "bin")
    assert os.access(binaries / "postgres", os.X_OK)


def test_a_stopped_server_leaves_no_process_or_folder():
    server = PostgresServer()
    server.start()
    port, root = server.port, server.root
    server.stop()
    assert not root.exists()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
