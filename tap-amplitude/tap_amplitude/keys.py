"""The `events` stream's key: every record leaves the tap with a usable ``uuid``.

Amplitude sets a uuid on every event, but exports have been seen without one (or with one that
is not a UUID). Such a record gets a deterministic uuid, so a re-read of the same line gives the
same key and PostHog's dedupe still works. The rule is target-posthog's (``record_uuid`` in
its mapping), so the tap and the target derive the same uuid for the same record:

- ``uuid`` itself when it is a UUID string;
- else uuid5(``UUID_NAMESPACE``, ``"insert_id␟<device_id>␟<user_id>␟<$insert_id>"``) when
  ``$insert_id`` is a non-empty string (Amplitude dedupes on it per device);
- else uuid5(``UUID_NAMESPACE``, ``"record␟"`` + the record as JSON with sorted keys).

(``␟`` is U+001F; values are formatted with Python's ``str``, a missing one as ``None``.)
A derived uuid is marked with ``uuid_derived: true``; an unusable original is kept in
``uuid_original``. Both packages test that they agree (tests/test_dirty_keys.py).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson

from tap_amplitude import exactjson
from tap_amplitude.exactjson import EXTRA_FIELD, RESERVED_KEY
from tap_amplitude.lines import REPAIRS_FIELD

# Never change: shared with target-posthog, whose PostHog dedupe depends on it.
UUID_NAMESPACE = uuid.UUID("6b1c9f3e-2f4d-5a8e-9c70-3d1e8a5b4f21")
DERIVED_FIELD = "uuid_derived"
ORIGINAL_FIELD = "uuid_original"
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def has_usable_uuid(record: dict[str, Any]) -> bool:
    """True for nearly every record: its ``uuid`` is a UUID string (checked cheaply first)."""
    value = record.get("uuid")
    if type(value) is not str:
        return False
    if _CANONICAL_UUID.fullmatch(value):
        return True
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def derive_uuid(record: dict[str, Any]) -> str:
    """The rule above, for a record without a usable uuid (read as exported, times unchanged)."""
    insert_id = record.get("$insert_id")
    if isinstance(insert_id, str) and insert_id:
        key = f"insert_id\x1f{record.get('device_id')}\x1f{record.get('user_id')}\x1f{insert_id}"
    else:
        # The record as exported: without the tap's repair notes, with the export's own fields
        # named like the tap's back in place (exactjson.settle moved them aside).
        exported = {k: v for k, v in record.items() if k not in (REPAIRS_FIELD, EXTRA_FIELD)}
        extra = record.get(EXTRA_FIELD)
        if isinstance(extra, dict):
            exported.update(extra.get(RESERVED_KEY) or {})
        text = exactjson.dumps(exported, default=str, option=orjson.OPT_SORT_KEYS).decode()
        key = "record\x1f" + text
    return str(uuid.uuid5(UUID_NAMESPACE, key))


def ensure_uuid(record: dict[str, Any]) -> None:
    """Give a record without a usable uuid its derived one, marked (in place)."""
    original = record.get("uuid")
    record["uuid"] = derive_uuid(record)
    record[DERIVED_FIELD] = True
    if original is not None:
        record[ORIGINAL_FIELD] = original
