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
    # The sample run: scripts.sample_run is `meltano run tap-amplitude target-posthog`, sealed
    # from .env (tests/test_e2e_meltano.py runs it with a filled one).
    assert any(line.endswith(".venv/bin/python -m scripts.sample_run") for line in one_liners)
    test_command = next(line for line in one_liners if line.endswith(".venv/bin/pytest"))
    assert test_command in (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_troubleshooting_quotes_messages_the_plugins_really_print() -> None:
    """Each quoted message of README's troubleshooting table, cut at its '...' and 'N' gaps,
    is in the plugins' code (or is Meltano's own, listed here)."""
    meltano_says = {
        "Another ... pipeline is already running",
        "Task exception was never retrieved ... write to closed file",
    }
    readme = (REPO_ROOT / "README.md").read_text()
    table = readme.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    code = "".join(
        path.read_text()
        for package in ("tap-amplitude/tap_amplitude", "target-posthog/target_posthog")
        for path in (REPO_ROOT / package).glob("*.py")
    )
    quoted = [
        quote
        for row in table.splitlines()
        if row.startswith("| ")
        for quote in re.findall(r'"([^"]+)"', row.split(" | ")[0])
    ]
    assert len(quoted) >= 8
    for quote in quoted:
        if quote in meltano_says:
            continue
        for piece in re.split(r"\.\.\.|\bN\b|\b\d{3}\b", quote):  # gaps and HTTP statuses
            # Code builds messages from f-string pieces: each literal piece must be in it.
            for part in re.split(r"\{[^}]*\}", piece):
                assert part.strip(" .") in code, f"README quotes {quote!r}: {part!r} not printed"
