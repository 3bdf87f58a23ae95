"""Write both plugins' definitions in Meltano Hub's format, for another Meltano project.

    .venv/bin/python scripts/plugin_definitions.py SOURCE [--out DIR]

SOURCE is where pip installs the plugins from: this repository as a git URL (for example
`git+https://github.com/you/amplitude-to-posthog.git@v0.1.0`; each pip_url gets
`#subdirectory=tap-amplitude` or `#subdirectory=target-posthog`) or as a local folder (each
pip_url is the plugin's subfolder); each pip_url names `singer-plugin-common` (the code both
plugins share, pinned by each, not on PyPI) from the same source first. DIR (default: the
working folder) receives `tap-amplitude.yml` and `target-posthog.yml`; in the other project:

    meltano add --plugin-type extractor tap-amplitude --from-ref DIR/tap-amplitude.yml
    meltano add --plugin-type loader target-posthog --from-ref DIR/target-posthog.yml

Capabilities, settings (kinds, labels, `sensitive`, defaults) and `settings_group_validation`
are read from this repository's meltano.yml; a label or description it leaves out comes from the
plugin's own `--about` (its settings' titles and descriptions), so nothing is written twice. The
Hub's other fields (variant, label, description, keywords, domain) are added here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
VARIANT = "amplitude-to-posthog"
HUB_FIELDS: dict[str, dict[str, Any]] = {
    "tap-amplitude": {
        "plugin_type": "extractors",
        "label": "Amplitude",
        "domain_url": "https://amplitude.com",
        "keywords": ["meltano_sdk", "amplitude", "events"],
    },
    "target-posthog": {
        "plugin_type": "loaders",
        "label": "PostHog",
        "domain_url": "https://posthog.com",
        "keywords": ["meltano_sdk", "posthog", "events"],
    },
}
# The code both plugins share: a folder of this repository beside theirs, not on PyPI.
COMMON = "singer-plugin-common"
# Project-specific config (paths of this repository's sample) does not belong in a definition.
_KEPT = ("name", "namespace", "executable", "capabilities", "settings_group_validation", "settings")


def pip_url(source: str, plugin: str) -> str:
    """The plugin and the package it pins that is not on PyPI (COMMON), both from ``source``."""
    if "://" in source or source.startswith("git+"):
        return " ".join(f"{source}#subdirectory={folder}" for folder in (COMMON, plugin))
    return " ".join(str(Path(source).resolve() / folder) for folder in (COMMON, plugin))


def _about(plugin: str) -> dict[str, dict[str, Any]]:
    """The plugin's settings as its `--about` describes them (installed beside this Python)."""
    executable = Path(sys.executable).with_name(plugin)
    about = subprocess.run(
        [str(executable), "--about", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return dict(json.loads(about.stdout)["settings"]["properties"])


def definition(plugin: str, source: str) -> dict[str, Any]:
    """The Hub-format definition of `plugin` installed from `source`."""
    project = yaml.safe_load((REPO_ROOT / "meltano.yml").read_text())
    hub = dict(HUB_FIELDS[plugin])
    entries = project["plugins"][hub.pop("plugin_type")]
    entry = next(e for e in entries if e["name"] == plugin)
    metadata = tomllib.loads((REPO_ROOT / plugin / "pyproject.toml").read_text())["project"]
    result: dict[str, Any] = {key: entry[key] for key in _KEPT if key in entry}
    about = _about(plugin)
    result["settings"] = [
        {
            **setting,
            "label": setting.get("label") or about[setting["name"]].get("title"),
            "description": setting.get("description") or about[setting["name"]].get("description"),
        }
        for setting in entry["settings"]
    ]
    result |= {
        "variant": VARIANT,
        "label": hub.pop("label"),
        "description": metadata["description"],
        "pip_url": pip_url(source, plugin),
        "maintenance_status": "active",
        **hub,
    }
    if source.startswith("git+"):
        result["repo"] = source.removeprefix("git+").split("@")[0]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="git URL (git+https://...) or local folder of this repo")
    parser.add_argument("--out", type=Path, default=Path.cwd())
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for plugin in HUB_FIELDS:
        path = args.out / f"{plugin}.yml"
        path.write_text(yaml.safe_dump(definition(plugin, args.source), sort_keys=False))
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
