"""Every file of tests/fuzz/corpus/<target>/ through its fuzz target: the seeds the
coverage-guided fuzzer starts from, and every crash it ever found (named crash-*), for good."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.purity import pure
from tests.fuzz.targets import TARGETS, run

CORPUS = Path(__file__).parent / "corpus"
FILES = sorted(p for p in CORPUS.glob("*/*") if p.is_file())


def test_every_target_has_a_corpus() -> None:
    assert {p.parent.name for p in FILES} == set(TARGETS)


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_corpus_file(path: Path) -> None:
    with pure():
        run(path.parent.name, path.read_bytes())
