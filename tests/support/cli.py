"""Running the real `mailflow` command line against a test's configuration."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from mailflow.config import Config


def run_cli(
    config: Config, *args: str, input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "mailflow", "--config", str(config.base_dir / "config.toml"), *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"mailflow {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


def cli_json(config: Config, *args: str) -> Any:
    return json.loads(run_cli(config, *args, "--json").stdout)
