"""A start_date that the bookmark overrides: said on every resume, with how to start over.
(The settings rules both plugins share are singer_plugin_common.settings_env.)"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping


def start_date_against_bookmark(
    start_date: dt.datetime, bookmark: str, environ: Mapping[str, str]
) -> str:
    """Which of a differing start_date and stored bookmark this run starts from, and how to
    start over: said on every resume (info), since a resume always stands past start_date;
    a start_date after the bookmark skips hours, and streams.py says that as a warning.

    The state id is not passed to plugins, so the way to find it is named instead: Meltano's
    `meltano run` stores it as `<environment>:<extractor>-to-<loader>[:<suffix>]`, and gives its
    plugins `MELTANO_ENVIRONMENT` and `MELTANO_EXTRACTOR_NAME` (meltano 4.4 `info_env`).
    """
    if dt.datetime.fromisoformat(bookmark) > start_date:
        environment = environ.get("MELTANO_ENVIRONMENT") or "<environment>"
        extractor = environ.get("MELTANO_EXTRACTOR_NAME") or "tap-amplitude"
        meltano = f"meltano --environment={environment} state"
        return (
            f"resuming from the stored bookmark {bookmark} (start_date {start_date.isoformat()} "
            "applies to a job without state). To start over from start_date, clear the job's "
            f"state: `{meltano} list --pattern '{environment}:{extractor}-to-*'` names it, then "
            f"`{meltano} clear --force <that state id>`"
        )
    return (
        f"start_date {start_date.isoformat()} is after the stored bookmark {bookmark}: "
        "start_date wins, the hours between are not read"
    )
