"""Keep the settings tables in the READMEs identical to what the plugins' `--about` says.

    .venv/bin/python scripts/settings_tables.py          # rewrite the tables in place
    .venv/bin/python scripts/settings_tables.py --check  # exit 1 if any table is stale (tests)

A table lives between `<!-- settings:PLUGIN -->` and `<!-- /settings:PLUGIN -->` markers.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ("tap-amplitude", "target-posthog")
DOCUMENTS = (
    REPO_ROOT / "README.md",
    REPO_ROOT / "tap-amplitude" / "README.md",
    REPO_ROOT / "target-posthog" / "README.md",
)


def settings_table(plugin: str) -> str:
    """The `| Setting | ...` table of `PLUGIN --about --format=markdown`."""
    executable = Path(sys.executable).with_name(plugin)
    about = subprocess.run(
        [str(executable), "--about", "--format=markdown"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines = about.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Setting |"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "\n".join(lines[start:end])


def refreshed(text: str, tables: dict[str, str]) -> str:
    for plugin, table in tables.items():
        pattern = re.compile(
            rf"(<!-- settings:{plugin} -->\n).*?(\n<!-- /settings:{plugin} -->)", re.DOTALL
        )
        text = pattern.sub(lambda m, t=table: f"{m.group(1)}{t}{m.group(2)}", text)
    return text


def main(argv: list[str]) -> int:
    check = "--check" in argv
    tables = {plugin: settings_table(plugin) for plugin in PLUGINS}
    stale = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        new = refreshed(text, tables)
        if new != text:
            stale.append(document.relative_to(REPO_ROOT))
            if not check:
                document.write_text(new, encoding="utf-8")
    if stale and check:
        print(f"Stale settings tables in {', '.join(map(str, stale))}: run {__file__}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
