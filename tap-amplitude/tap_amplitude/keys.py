"""The `events` stream's key: every record leaves the tap with a usable ``uuid``.

Amplitude sets a uuid on every event, but exports have been seen without one (or with one that
is not a UUID). Such a record gets a deterministic uuid, so a re-read of the same line gives the
same key and PostHog's dedupe still works:

- ``uuid`` itself when it is a UUID string, but for the placeholders that name no event: the
  nil UUID (``00000000-0000-0000-0000-000000000000``) and the max UUID (``ffffffff-...``, RFC
  9562), in any spelling ``uuid.UUID`` reads (no dashes, braces, ``urn:uuid:``, upper case).
  Unset ids are sent as these, and PostHog would make every such event of a day one event.
  Another spelling is written in the canonical form (lowercase, dashed: what target-posthog
  sends PostHog, so the Singer key and the PostHog uuid are one value), its exported text kept
  in ``uuid_original``;
- else uuid5(``UUID_NAMESPACE``, ``"insert_id␟<device_id>␟<user_id>␟<$insert_id>"``) when
  ``$insert_id`` is a non-empty string (Amplitude dedupes on it per device; target-posthog's
  ``record_uuid`` has the same rule, tests/test_dirty_tap.py checks that they agree; a repair
  that changed one of these ids kept it distinct, see lines.py);
- else uuid5(``UUID_NAMESPACE``, ``"line␟"`` + the line's bytes as exported, without the JSON
  whitespace around them). The line, not the record read from it: a repair (U+FFFD for a lone
  surrogate or bytes that are not UTF-8, a key given twice) makes two different lines one
  record, and one uuid would make PostHog keep one event of the two. Identical lines (an event
  exported twice) still get one uuid.

(``␟`` is U+001F; values are formatted with Python's ``str``, a missing one as ``None``; uuid5
of bytes is SHA-1 over the namespace's bytes and them, as RFC 4122 defines it.) A derived uuid
is marked with ``uuid_derived: true``; an unusable original is kept in ``uuid_original``.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

# Never change: shared with target-posthog, whose PostHog dedupe depends on it.
UUID_NAMESPACE = uuid.UUID("6b1c9f3e-2f4d-5a8e-9c70-3d1e8a5b4f21")
DERIVED_FIELD = "uuid_derived"
ORIGINAL_FIELD = "uuid_original"
_JSON_WHITESPACE = b" \t\r\n"
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
PLACEHOLDER_UUIDS = frozenset((uuid.UUID(int=0), uuid.UUID(int=(1 << 128) - 1)))
_PLACEHOLDER_TEXTS = frozenset(map(str, PLACEHOLDER_UUIDS))


def canonical_uuid(value: Any) -> str | None:
    """The canonical form (lowercase, dashed: ``str(uuid.UUID(value))``) of a UUID string that
    is not a placeholder (the rule above); None for anything else. Cheap for the canonical form
    nearly every record has."""
    if type(value) is not str:
        return None
    if _CANONICAL_UUID.fullmatch(value):
        return value if value not in _PLACEHOLDER_TEXTS else None
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return None
    return str(parsed) if parsed not in PLACEHOLDER_UUIDS else None


def has_usable_uuid(record: dict[str, Any]) -> bool:
    """True for nearly every record: its ``uuid`` is usable and canonical already (the tap
    keeps it as it is); else `ensure_uuid` has work to do."""
    value = record.get("uuid")
    return (
        type(value) is str
        and _CANONICAL_UUID.fullmatch(value) is not None
        and value not in _PLACEHOLDER_TEXTS
    )


def derive_uuid(record: dict[str, Any], line: bytes) -> str:
    """The rule above, for a record without a usable uuid, read from ``line``."""
    insert_id = record.get("$insert_id")
    if isinstance(insert_id, str) and insert_id:
        key = f"insert_id\x1f{record.get('device_id')}\x1f{record.get('user_id')}\x1f{insert_id}"
        return str(uuid.uuid5(UUID_NAMESPACE, key))
    name = b"line\x1f" + line.strip(_JSON_WHITESPACE)
    digest = hashlib.sha1(UUID_NAMESPACE.bytes + name, usedforsecurity=False).digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))


def ensure_uuid(record: dict[str, Any], line: bytes) -> bool:
    """Give a record whose uuid `has_usable_uuid` refuses (read from ``line``) its canonical
    uuid, or else its derived one, marked (in place); True when derived."""
    original = record.get("uuid")
    canonical = canonical_uuid(original)
    if canonical is not None:
        record["uuid"] = canonical
        record[ORIGINAL_FIELD] = original
        return False
    record["uuid"] = derive_uuid(record, line)
    record[DERIVED_FIELD] = True
    if original is not None:
        record[ORIGINAL_FIELD] = original
    return True
