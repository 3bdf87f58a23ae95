"""The dry run's sender: each request's exact payload, written to a JSON-lines file instead
of PostHog (the `dry_run_path` setting)."""

from __future__ import annotations

from pathlib import Path

from target_posthog.client import Answer
from target_posthog.deadletter import JsonLinesFile
from target_posthog.delivery import Sender


def payload_writer(path: Path, *, historical_migration: bool) -> tuple[Sender, JsonLinesFile]:
    """A sender writing one line per request, the body PostHog's batch API would get (without
    `api_key`), and the file it writes (the caller closes it: closing flushes).

    The file replaces an earlier dry run's at once: a dry run moves no bookmark, so the next one
    covers the same range again, and a run that writes nothing must not leave old payloads.
    """
    payloads = JsonLinesFile(path, replace=True)
    payloads.open_now()
    head = (
        b'{"historical_migration":'
        + (b"true" if historical_migration else b"false")
        + b',"batch":['
    )

    def write_payload(joined_events: memoryview) -> Answer:
        payloads.write_line(b"".join((head, joined_events, b"]}")))
        return Answer(200, "dry run")

    return write_payload, payloads
