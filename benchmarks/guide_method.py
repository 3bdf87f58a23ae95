"""PostHog's migration guide, written as a user would write it from the guide.

Reads Amplitude's hourly `.json.gz` export files, calls posthog-python's `capture()` once per
event and `alias()` once per user, with `historical_migration=True`. The only change from the
guide's defaults is a queue large enough that the SDK drops nothing (by default it silently
discards events once 10,000 are queued).

Usage: python -m benchmarks.guide_method EXPORT_DIR HOST API_KEY MAX_EVENTS
Prints one JSON line: {"events": n, "aliases": n, "seconds": s}.
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from pathlib import Path

from posthog import Posthog

GUIDE_OWN_FIELDS = frozenset(
    ("event_type", "event_time", "user_id", "device_id", "event_properties", "user_properties")
)


def main(export_dir: str, host: str, api_key: str, max_events: int) -> None:
    posthog = Posthog(
        api_key,
        host=host,
        historical_migration=True,
        max_queue_size=max_events + 10_000,
    )
    started = time.perf_counter()
    sent = 0
    first_device_of_user: dict[str, str] = {}
    for path in sorted(Path(export_dir).rglob("*.json.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            for line in lines:
                event = json.loads(line)
                distinct_id = event.get("user_id") or event.get("device_id")
                if not distinct_id or not event.get("event_type"):
                    continue
                # The guide's event_message: event properties, every other Amplitude field,
                # user properties as $set, and GeoIP off.
                other_fields = {k: v for k, v in event.items() if k not in GUIDE_OWN_FIELDS}
                properties = {
                    **(event.get("event_properties") or {}),
                    **other_fields,
                    "$set": {**(event.get("user_properties") or {})},
                    "$geoip_disable": True,
                }
                posthog.capture(
                    event["event_type"],
                    distinct_id=distinct_id,
                    properties=properties,
                    timestamp=event["event_time"].replace(" ", "T") + "+00:00",
                    uuid=event["uuid"],
                )
                if event.get("user_id") and event.get("device_id"):
                    first_device_of_user.setdefault(event["user_id"], event["device_id"])
                sent += 1
                if sent >= max_events:
                    break
        if sent >= max_events:
            break
    for user_id, device_id in first_device_of_user.items():
        posthog.alias(previous_id=user_id, distinct_id=device_id)
    posthog.flush()
    posthog.shutdown()
    seconds = time.perf_counter() - started
    print(json.dumps({"events": sent, "aliases": len(first_device_of_user), "seconds": seconds}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
