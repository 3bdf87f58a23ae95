"""The READMEs a user reads say what the code does."""

from __future__ import annotations

import re
import subprocess
import sys

from scripts.settings_tables import DOCUMENTS, PLUGINS, REPO_ROOT

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def test_settings_tables_match_the_plugins_about_output() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "settings_tables.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_readme_holds_the_settings_table_of_its_plugins() -> None:
    for plugin in PLUGINS:
        holders = [doc for doc in DOCUMENTS if f"<!-- settings:{plugin} -->" in doc.read_text()]
        assert REPO_ROOT / "README.md" in holders
        assert REPO_ROOT / plugin / "README.md" in holders


def test_readme_gives_the_two_commands_ci_runs() -> None:
    blocks = re.findall(r"```sh\n(.*?)\n```", README, flags=re.DOTALL)
    one_liners = [block for block in blocks if "\n" not in block]
    assert any(line.endswith("meltano run tap-amplitude target-posthog") for line in one_liners)
    test_command = next(line for line in one_liners if line.endswith(".venv/bin/pytest"))
    assert test_command in (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
