"""Fixtures shared by the report tests."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"


@pytest.fixture
def bin_dir() -> Iterator[Path]:
    """A folder for stand-in programs, outside /tmp: the jail hides the machine's /tmp."""
    folder = ARTIFACTS / f"bin-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
