"""Environment variables that look like settings but name none (a typo is otherwise ignored)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

# Variables with the prefix that are not settings: the SDK's log level, and Meltano's extras
# (`TAP_AMPLITUDE__SELECT`, ...: a double underscore).
_NOT_SETTINGS = ("LOGLEVEL",)


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
