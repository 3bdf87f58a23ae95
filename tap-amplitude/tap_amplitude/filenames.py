"""Which files of an export folder or zip are export data, and why the others are skipped.

Exports are copied around by people: macOS adds AppleDouble files (``._<name>``, beside the file
or under ``__MACOSX/`` in a zip it made) and ``.DS_Store``; S3 exports carry marker files such as
``complete``; zips have folder entries. None of these holds events, and reading one as gzip
would stop the run, so each is skipped with one info line saying why.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import PurePosixPath

logger = logging.getLogger("tap-amplitude")

EXPORT_SUFFIXES = (".zip", ".json.gz")
MEMBER_SUFFIXES = (".json.gz", ".json")


def skip_reason(name: str, suffixes: tuple[str, ...] = EXPORT_SUFFIXES) -> str | None:
    """Why ``name`` (a path, or a zip member's name) is not export data; None when it is."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not parts or name.endswith("/"):
        return "a folder entry"
    if "__MACOSX" in parts:
        return "macOS metadata (__MACOSX)"
    base = parts[-1]
    if base.startswith("._"):
        return "macOS metadata (AppleDouble ._ file)"
    if base == ".DS_Store":
        return "macOS folder metadata (.DS_Store)"
    if any(part.startswith(".") and part not in {".", ".."} for part in parts):
        return "a hidden file"
    if not base.endswith(suffixes):
        return f"not export data (names end in {' or '.join(suffixes)})"
    return None


def log_skipped(where: str, reason: str, skipped: Counter[str] | None = None) -> None:
    """The one info line for a skipped file or member; counted by ``reason`` in ``skipped``
    (for the run's summary) unless None."""
    logger.info("Skipping %s: %s", where, reason)
    if skipped is not None:
        skipped[reason] += 1
