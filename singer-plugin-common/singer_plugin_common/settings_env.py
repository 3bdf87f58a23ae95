"""Settings as Meltano passes them: numbers, booleans and choices as text, variables that look
like settings but name none (a typo is otherwise ignored), and the config files Meltano writes
for each run (keys in clear)."""

from __future__ import annotations

import contextlib
import difflib
import itertools
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

# Variables with the prefix that are not settings: the SDK's log level, and Meltano's extras
# (`TAP_AMPLITUDE__SELECT`, ...: a double underscore).
_NOT_SETTINGS = ("LOGLEVEL",)

# Booleans as text: the words Meltano and singer-sdk take for true (their TRUTHY), and only
# their opposites for false (both take any other text for false).
_TRUE_TEXT = frozenset(("true", "1", "yes", "on"))
_FALSE_TEXT = frozenset(("false", "0", "no", "off"))
_WHOLE_NUMBER = re.compile(r"[+-]?\d+")
_DECIMAL = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


# Meltano's per-run config files (meltano 4.4: `<role>.<uuid>.config.json`), and the age after
# which one is a killed run's leftover.
_MELTANO_CONFIG = re.compile(r"(tap|target)\.[0-9a-f-]{36}\.config\.json")
STALE_CONFIG_SECONDS = 600


def values_from_text(config: MutableMapping[str, Any], properties: Mapping[str, Any]) -> None:
    """Turn, in place, the text of a boolean, integer, number or option setting into its value.

    meltano.yml declares those settings with kind `string`: with its own kinds Meltano turns a
    boolean it cannot read ("ture") into false without a word, and stops with a traceback on an
    integer it cannot read ("6k") or an option in another case ("Keep"). So the plugin reads the
    text itself: strictly (booleans as Meltano's truthy words and their opposites, options in
    any case); text it cannot read stays as it is, and the schema check names it in one line.
    """
    for name, value in list(config.items()):
        schema = properties.get(name)
        if not isinstance(value, str) or not isinstance(schema, Mapping):
            continue
        text = value.strip()
        kinds = schema.get("type", ())
        kinds = {kinds} if isinstance(kinds, str) else set(kinds)
        if "boolean" in kinds and text.lower() in _TRUE_TEXT | _FALSE_TEXT:
            config[name] = text.lower() in _TRUE_TEXT
        elif "integer" in kinds and _WHOLE_NUMBER.fullmatch(text):
            config[name] = int(text)
        elif "number" in kinds and _DECIMAL.fullmatch(text):
            config[name] = float(text)
        elif schema.get("enum"):
            options = {
                option.lower(): option for option in schema["enum"] if isinstance(option, str)
            }
            config[name] = options.get(text.lower(), value)


def unknown_setting_variables(
    environ: Mapping[str, str], prefix: str, settings: Iterable[str]
) -> list[str]:
    """One warning per `<prefix>NAME` variable that names no setting, with the closest one.

    Meltano passes each setting as `<PLUGIN>_<SETTING>` (upper case); a misspelt name reaches
    the plugin as an unknown variable and would otherwise change nothing, silently.
    """
    known = {name.upper(): name for name in settings}
    warnings = []
    for variable in sorted(environ):
        if not variable.startswith(prefix) or variable.startswith(prefix + "_"):
            continue
        name = variable.removeprefix(prefix)
        if name in known or name in _NOT_SETTINGS:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"did you mean {prefix}{close[0]} ({known[close[0]]})?" if close else "ignored"
        warnings.append(f"{variable} names no setting of this plugin: {hint}")
    return warnings


def announce_settings(
    logger: logging.Logger, prefix: str, settings: Iterable[str], in_force: Callable[[], str]
) -> None:
    """Say at the start of a run what it will do: one warning per `<prefix>NAME` variable that
    names no setting (:func:`unknown_setting_variables`), then one info line, "settings in
    force: <in_force()>"."""
    for warning in unknown_setting_variables(os.environ, prefix, settings):
        logger.warning(warning)
    logger.info("settings in force: %s", in_force())


def remove_meltano_config_file(argv: Sequence[str], role: str) -> int:
    """Delete the config file Meltano wrote for this run, once read, and those killed runs left:
    they hold the keys in clear, and Meltano removes one only when its run ends normally (a
    killed run leaves `.meltano/run/<plugin>/<role>.<uuid>.config.json`). Only files of exactly
    that shape are touched, never a config file a user passes by hand; another run's file only
    once it is STALE_CONFIG_SECONDS old (parallel jobs share `.meltano/run/`, and a plugin reads
    its file within seconds of its start). Returns how many files of killed runs were removed.

    It also makes `.meltano/run/` readable by its owner only: Meltano writes the next runs'
    config files there with the default umask (world-readable on most machines)."""
    for flag, value in itertools.pairwise(argv):
        if flag != "--config":
            continue
        path = Path(value)
        if not (
            _MELTANO_CONFIG.fullmatch(path.name)
            and path.name.startswith(f"{role}.")
            and path.parent.parent.name == "run"
            and path.parent.parent.parent.name == ".meltano"
        ):
            continue
        run_folder = path.parent.parent
        with contextlib.suppress(OSError):  # not ours to own: the unlink still matters
            run_folder.chmod(0o700)
        stale_before = time.time() - STALE_CONFIG_SECONDS
        stale = [
            other
            for other in run_folder.glob("*/*.config.json")
            if other != path
            and _MELTANO_CONFIG.fullmatch(other.name)
            and _modified(other) < stale_before
        ]
        removed = 0
        for file in (path, *stale):
            with contextlib.suppress(FileNotFoundError):
                file.unlink()
                removed += file is not path
        return removed
    return 0


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return float("inf")  # gone meanwhile: nothing to remove


def remove_meltano_config_files_and_say(
    argv: Sequence[str], role: str, logger: logging.Logger
) -> None:
    """:func:`remove_meltano_config_file`, and one info line when killed runs' files went too."""
    stale = remove_meltano_config_file(argv, role)
    if stale:
        logger.info(
            "removed %d config files that killed Meltano runs left under .meltano/run "
            "(they held keys in clear)",
            stale,
        )
