"""Both plugins in someone else's Meltano project: Hub-format definitions written by
scripts/plugin_definitions.py, added with `meltano add --from-ref`, installed by pip from this
repository's git history (`git+file://...@commit#subdirectory=...`), then
`meltano run tap-amplitude target-jsonl` and `meltano run tap-amplitude target-posthog`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml

from scripts.plugin_definitions import definition
from tests.meltano_harness import MELTANO, REPO_ROOT, base_environment

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SAMPLE = REPO_ROOT / "sample" / "amplitude-export"


def meltano(project: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(MELTANO), *args],
        cwd=project,
        env=base_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"meltano {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def meltano_kind(plugin: str, name: str) -> str:
    """The kind this repository's meltano.yml gives a setting (the definitions' source)."""
    project = yaml.safe_load((REPO_ROOT / "meltano.yml").read_text())
    entries = [e for kind in ("extractors", "loaders") for e in project["plugins"][kind]]
    entry = next(e for e in entries if e["name"] == plugin)
    return str(next(s for s in entry["settings"] if s["name"] == name)["kind"])


def test_the_definitions_carry_what_meltano_hub_lists() -> None:
    tap = definition("tap-amplitude", "git+https://example.invalid/repo.git@v0.1.0")
    target = definition("target-posthog", "/some/checkout")
    assert (
        tap["pip_url"]
        == "git+https://example.invalid/repo.git@v0.1.0#subdirectory=singer-plugin-common "
        "git+https://example.invalid/repo.git@v0.1.0#subdirectory=tap-amplitude"
    )
    assert tap["repo"] == "https://example.invalid/repo.git"
    assert set(tap["capabilities"]) >= {"catalog", "discover", "state", "about"}
    assert tap["settings_group_validation"] == [
        ["start_date", "export_path"],
        ["start_date", "api_key", "secret_key"],
    ]
    settings = {s["name"]: s for s in tap["settings"]}
    assert settings["api_key"]["sensitive"] is True and settings["secret_key"]["sensitive"]
    assert settings["start_date"]["kind"] == meltano_kind("tap-amplitude", "start_date")
    for setting in [*tap["settings"], *target["settings"]]:
        assert setting["kind"] and setting["label"] and setting["description"], setting
    assert target["pip_url"] == "/some/checkout/singer-plugin-common /some/checkout/target-posthog"
    assert {s["name"]: s for s in target["settings"]}["api_key"]["sensitive"] is True
    assert "config" not in target  # the sample's paths stay in this repository


def test_both_plugins_install_and_run_in_a_fresh_project_elsewhere(tmp_path: Path) -> None:
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    source = f"git+file://{REPO_ROOT}@{commit}"
    definitions = tmp_path / "definitions"
    written = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "plugin_definitions.py"), source,
         "--out", str(definitions)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert written.returncode == 0, written.stderr

    project = tmp_path / "elsewhere"
    project.mkdir()
    (project / "meltano.yml").write_text(
        yaml.safe_dump(
            {
                "default_environment": "dev",
                "send_anonymous_usage_stats": False,
                "environments": [{"name": "dev"}],
                "plugins": {
                    "loaders": [
                        {
                            "name": "target-jsonl",
                            "namespace": "target_jsonl",
                            "pip_url": "target-jsonl==0.1.4",
                            "settings": [{"name": "destination_path", "kind": "string"}],
                        }
                    ]
                },
            }
        )
    )
    meltano(project, "add", "--plugin-type", "extractor", "tap-amplitude", "--from-ref",
            str(definitions / "tap-amplitude.yml"), "--no-install")  # fmt: skip
    meltano(project, "add", "--plugin-type", "loader", "target-posthog", "--from-ref",
            str(definitions / "target-posthog.yml"), "--no-install")  # fmt: skip
    meltano(project, "install")
    meltano(project, "config", "set", "tap-amplitude", "export_path", str(SAMPLE))
    meltano(project, "config", "set", "tap-amplitude", "start_date", "2024-03-01T00:00:00Z")
    meltano(project, "config", "set", "target-jsonl", "destination_path", str(tmp_path / "jsonl"))
    for name, value in (
        ("api_key", "phc_placeholder_for_a_dry_run"),
        ("dry_run_path", str(tmp_path / "payloads.jsonl")),
        ("alias_registry", str(tmp_path / "aliases.sqlite")),
        ("dead_letter_path", str(tmp_path / "dead-letter.jsonl")),
    ):
        meltano(project, "config", "set", "target-posthog", name, value)

    meltano(project, "run", "tap-amplitude", "target-jsonl")
    (rows,) = list((tmp_path / "jsonl").glob("*.jsonl"))
    records = [orjson.loads(line) for line in rows.read_bytes().splitlines()]
    meltano(project, "run", "tap-amplitude", "target-posthog")
    payloads = (tmp_path / "payloads.jsonl").read_bytes().splitlines()
    sent = {e["uuid"] for line in payloads for e in orjson.loads(line)["batch"]}

    assert records and {r["uuid"] for r in records} <= sent
    venv = project / ".meltano" / "extractors" / "tap-amplitude" / "venv"
    installed = list(venv.glob("lib/python3*/site-packages/tap_amplitude/py.typed"))
    assert installed, "the tap was not installed from the repository (or without py.typed)"
