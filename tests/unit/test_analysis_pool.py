"""A message that kills its analysis process does not take the one beside it down too.

A process that dies breaks the whole pool, so the other message in it at that moment failed
as well; tried again in a new pool beside the same killer, it failed again and was counted
with it, and after the last attempt quarantined with it. Here the two run on two threads (the
worker's two loops), in real processes: the killer exits the moment the other has started."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from mailflow.workflow.pool import AnalysisPool


def innocent(folder: str) -> str:
    Path(folder, "started").touch()
    deadline = time.monotonic() + 60  # a hang guard: the test opens the gate
    while not Path(folder, "gate").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return "analysed"


def killer(folder: str) -> str:
    deadline = time.monotonic() + 60
    while not Path(folder, "started").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    os._exit(9)  # as the kernel's out-of-memory killer would end it


def test_only_the_message_that_kills_its_process_fails(tmp_path: Path) -> None:
    pool = AnalysisPool(2)
    results: dict[str, object] = {}

    def run(name: str, fn: object) -> None:
        try:
            results[name] = pool.run(fn, str(tmp_path))  # type: ignore[arg-type]
        except BrokenProcessPool as exc:
            results[name] = exc

    try:
        pool.warm()
        threads = {name: threading.Thread(target=run, args=(name, fn))
                   for name, fn in (("innocent", innocent), ("killer", killer))}
        threads["innocent"].start()
        threads["killer"].start()
        threads["killer"].join(120)
        (tmp_path / "gate").touch()
        threads["innocent"].join(120)
    finally:
        (tmp_path / "gate").touch()
        pool.shutdown()
    assert isinstance(results["killer"], BrokenProcessPool)
    assert results["innocent"] == "analysed"


@pytest.fixture(autouse=True)
def _spawned_children_import_this_module() -> None:
    assert __name__ == "tests.unit.test_analysis_pool"
