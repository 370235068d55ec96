"""A short coverage-guided run of every parse/ target (a few hundred inputs, fixed seed), so a
harness that no longer starts, or a crash within reach of the seeds, fails `make test`.
`make fuzz` runs the same harness for minutes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

ROOT = Path(__file__).parents[2]
CORPUS = Path(__file__).parent / "corpus"
RUNS = 300


@pytest.mark.parametrize("target", list(TARGETS))
def test_short_coverage_guided_run(target: str, tmp_path: Path) -> None:
    grown = tmp_path / "corpus"
    shutil.copytree(CORPUS / target, grown)  # libFuzzer adds to the first directory it is given
    done = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.atheris_parse", target, f"-runs={RUNS}", "-seed=1",
         "-max_len=4096", f"-artifact_prefix={tmp_path}/", str(grown)],
        cwd=ROOT, capture_output=True, text=True, errors="replace")
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"Done {RUNS} runs" in done.stderr
