"""README command 1: `meltano run tap-amplitude target-posthog` on the bundled sample, sealed
from the real migration's settings.

A user preparing the real migration fills `.env` and may export `TAP_AMPLITUDE_*` /
`TARGET_POSTHOG_*` variables. Meltano applies both above meltano.yml's `dev` environment, so a
production `start_date` would leave the sample run reading nothing, and a production key or
speed limit would change what it does. This runs the same job in the `dev` environment with
Meltano's `--env-file` pointed at the empty ``os.devnull`` (so `.env` is not read) and those
variables set aside, with every ``MELTANO_*`` variable too (environment, state id suffix, system
folders and database), and says which names it set aside (never their values).

Run from the project root: ``.venv/bin/python -m scripts.sample_run``. It replaces itself with
Meltano (`os.execve`), so Ctrl-C, the exit code and the output are Meltano's own.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

# Variables Meltano maps onto the plugins' settings, and Meltano's own (environment, state id
# suffix, system folders and database, buffer size ...: each changes what the run does).
PLUGIN_PREFIXES = ("TAP_AMPLITUDE_", "TARGET_POSTHOG_")
MELTANO_PREFIX = "MELTANO_"
JOB = ("tap-amplitude", "target-posthog")


def sealed_environment(environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """`environ` without the plugins' setting variables and Meltano's own.

    Returns the environment to run with and the sorted names set aside. Other variables
    (``PATH``, ``HOME``, proxies ...) pass unchanged.
    """
    kept: dict[str, str] = {}
    set_aside: list[str] = []
    for name, value in environ.items():
        if name.startswith((*PLUGIN_PREFIXES, MELTANO_PREFIX)):
            set_aside.append(name)
        else:
            kept[name] = value
    return kept, sorted(set_aside)


def command(meltano: Path, empty_env_file: Path) -> list[str]:
    """The sealed `meltano run` command line."""
    return [
        str(meltano),
        "--env-file",
        str(empty_env_file),
        "--environment=dev",
        "run",
        *JOB,
    ]


def main() -> None:
    """Say what is set aside, then become Meltano."""
    root = Path.cwd()
    if not (root / "meltano.yml").is_file():
        sys.exit("sample_run: run it from the project root (the folder holding meltano.yml)")
    meltano = Path(sys.executable).with_name("meltano")
    env, set_aside = sealed_environment(os.environ)
    ignored = ", ".join(set_aside) if set_aside else "none"
    dotenv = "ignored" if (root / ".env").exists() else "absent"
    print(
        f"sample run: meltano run {' '.join(JOB)} in the dev environment on the bundled sample; "
        f".env {dotenv}; variables set aside: {ignored}",
        file=sys.stderr,
        flush=True,
    )
    args = command(meltano, Path(os.devnull))
    os.execve(args[0], args, env)


if __name__ == "__main__":
    main()
