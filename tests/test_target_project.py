"""The alias registry records the PostHog project it serves and refuses to serve another.

Rehearsing into a test project and then migrating into the real one with the same registry
file would send the real project every event and no alias (the registry says they were sent).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from target_posthog.project import canonical_host, key_fingerprint

from tests.target_support import (
    POSTHOG_KEY,
    SCHEMA,
    delivered,
    record,
    run_target,
    tap_records,
    target_config,
)
from tests.testbed.posthog import PostHogStandIn

OTHER_KEY = "phc_the_real_project_key_0815"


@pytest.fixture
def posthog() -> Iterator[PostHogStandIn]:
    with PostHogStandIn(api_key=POSTHOG_KEY) as server:
        yield server


def messages(count: int = 60) -> list[dict]:
    return [SCHEMA, *(record(r) for r in tap_records(count))]


def test_a_registry_serves_one_project_and_refuses_another_in_one_line(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    config = target_config(tmp_path, posthog)
    first = run_target(config, messages(), tmp_path, posthog)
    assert first.returncode == 0, first.stderr
    assert "serves PostHog project" in first.stderr
    aliases = len(posthog.aliases())
    assert aliases > 0
    events = len(posthog.events)

    # The same registry, another project (other key; then the other region's host).
    for other in ({"api_key": OTHER_KEY}, {"host": posthog.url.replace("127.0.0.1", "localhost")}):
        refused = run_target({**config, **other}, messages(), tmp_path, posthog)
        assert refused.returncode == 1
        lines = [line for line in refused.stderr.splitlines() if "cannot start" in line]
        assert len(lines) == 1, refused.stderr
        (line,) = lines
        this_host = canonical_host(other.get("host", posthog.url))
        this_print = key_fingerprint(other.get("api_key", POSTHOG_KEY))
        assert f"serves PostHog project {posthog.url} (project key fingerprint " in line
        assert key_fingerprint(POSTHOG_KEY) in line
        assert f"not {this_host} (project key fingerprint {this_print}) of this run" in line
        assert "use a new alias_registry file" in line
        for key in (POSTHOG_KEY, OTHER_KEY):
            assert key not in refused.stderr + refused.stdout
        assert len(posthog.events) == events, "a refused run sent something"

    # The same project, written differently (trailing slash, upper case): served.
    again = run_target(
        {**config, "host": posthog.url.upper().replace("HTTP://", "http://") + "/"},
        messages(90),
        tmp_path,
    )
    assert again.returncode == 0, again.stderr
    assert len(delivered(posthog)) > 60


def test_the_registry_holds_a_fingerprint_never_the_key(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    config = target_config(tmp_path, posthog)
    assert run_target(config, messages(), tmp_path, posthog).returncode == 0
    registry = Path(config["alias_registry"])
    with sqlite3.connect(registry) as db:
        meta = dict(db.execute("SELECT key, value FROM registry_meta").fetchall())
    assert meta == {
        "posthog_host": posthog.url,
        "posthog_project_key_fingerprint": key_fingerprint(POSTHOG_KEY),
    }
    for path in registry.parent.glob(registry.name + "*"):
        assert POSTHOG_KEY.encode() not in path.read_bytes()
        assert POSTHOG_KEY.removeprefix("phc_").encode() not in path.read_bytes()


def test_a_registry_from_before_is_bound_with_a_warning(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    config = target_config(tmp_path, posthog)
    assert run_target(config, messages(), tmp_path, posthog).returncode == 0
    registry = Path(config["alias_registry"])
    with sqlite3.connect(registry) as db:
        # As an older target-posthog left it: aliases, no project recorded (since migrations,
        # the table exists from the start; a registry from before them is migrated to it).
        db.execute("DELETE FROM registry_meta")
    run = run_target(config, messages(), tmp_path, posthog)
    assert run.returncode == 0, run.stderr
    assert "recorded no PostHog project" in run.stderr
    assert "If its aliases were sent to another project, stop" in run.stderr
    refused = run_target({**config, "api_key": OTHER_KEY}, messages(), tmp_path, posthog)
    assert refused.returncode == 1


def test_a_dry_run_checks_the_registry_and_writes_nothing(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    registry = tmp_path / "aliases.sqlite"
    dry = target_config(tmp_path, posthog, dry_run_path=str(tmp_path / "payloads.jsonl"))
    assert run_target(dry, messages(), tmp_path, posthog).returncode == 0
    assert not registry.exists(), "a dry run created the registry"

    assert run_target(target_config(tmp_path, posthog), messages(), tmp_path).returncode == 0
    refused = run_target({**dry, "api_key": OTHER_KEY}, messages(), tmp_path)
    assert refused.returncode == 1
    assert "use a new alias_registry file" in refused.stderr


def test_a_first_run_refused_by_posthog_does_not_tie_a_new_registry_to_its_wrong_key(
    tmp_path: Path, posthog: PostHogStandIn
) -> None:
    """A typo in the key or host on the very first run must not leave a registry that refuses
    the right project afterwards: nothing reached PostHog."""
    config = target_config(tmp_path, posthog)
    wrong = run_target({**config, "api_key": OTHER_KEY}, messages(), tmp_path, posthog)
    assert wrong.returncode == 1
    assert "refused the project API key (401)" in wrong.stderr
    assert "serves PostHog project" not in wrong.stderr

    right = run_target(config, messages(), tmp_path, posthog)
    assert right.returncode == 0, right.stderr
    assert f"serves PostHog project {posthog.url}" in right.stderr
    with sqlite3.connect(config["alias_registry"]) as db:
        stored = dict(db.execute("SELECT key, value FROM registry_meta").fetchall())
    assert stored["posthog_project_key_fingerprint"] == key_fingerprint(POSTHOG_KEY)
    assert len(delivered(posthog)) == 60
