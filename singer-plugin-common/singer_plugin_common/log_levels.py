"""Warnings that still read as warnings where the log format drops the level.

Meltano 4.4 gives each singer-sdk plugin a logging config whose format is ``%(message)s``
(`.meltano/run/<plugin>/*.singer_sdk_logging.json`) and shows every line the plugin writes at
its own "info" level, so a warning (a start_date that skips hours, a misspelt variable) looked
like any routine line. Where a handler's format names no level, warning and error lines get
their level as a prefix ("warning: ...").
"""

from __future__ import annotations

import logging


class _LevelPrefix(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING and not getattr(record, "level_prefixed", False):
            record.msg = f"{record.levelname.lower()}: {record.msg}"
            record.level_prefixed = True
        return True


def show_levels_where_the_format_drops_them() -> None:
    """Add the prefix filter to each root handler whose format has no ``levelname``."""
    for handler in logging.getLogger().handlers:
        form = getattr(handler.formatter, "_fmt", None) or ""
        if "levelname" not in form and not any(
            isinstance(existing, _LevelPrefix) for existing in handler.filters
        ):
            handler.addFilter(_LevelPrefix())
