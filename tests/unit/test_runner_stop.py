"""A runner part stops when told, even when it is woken at the same moment.

Before Python 3.12, asyncio.wait_for swallows a cancellation that arrives in the same loop turn
as the event it waits for (CPython gh-86296). The parts were stopped by cancelling their loop,
so a stop that met a wake-up (a door spooling a message, a bus event) left the loop running and
`mailflow serve` never exited on SIGTERM; in the suite, a service fixture hung at teardown.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from mailflow.parts import RunnerPart
from mailflow.runner import Runner
from tests.support.aio import run_apart


class IdleRunner(Runner[Any, Any]):
    """A queue that is always empty: each turn finds nothing, so the loop waits for a wake."""

    name = "idle"
    max_attempts = 1
    backoff = ()
    poll_seconds = 0.2

    def step(self) -> int:
        return 0

    def due(self, now: datetime) -> Any:
        raise NotImplementedError

    def take(self, row: Any, now: datetime) -> Any:
        raise NotImplementedError

    def holds(self, row: Any, claim: Any) -> bool:
        raise NotImplementedError

    def dispose(self, claim: Any) -> None:
        raise NotImplementedError

    def retry(self, *args: Any) -> None:
        raise NotImplementedError

    def give_up(self, *args: Any) -> None:
        raise NotImplementedError


class IdlePart(RunnerPart):
    runner_class = IdleRunner

    def make_runner(self) -> Runner[Any, Any]:
        return IdleRunner(app=None)  # type: ignore[arg-type]


def test_a_part_woken_as_it_is_stopped_still_stops() -> None:
    async def rounds() -> bool:
        for _ in range(200):
            service = SimpleNamespace(app=None, wakes={"idle": asyncio.Event()},
                                      instance_id=None)
            part = IdlePart(service)  # type: ignore[arg-type]
            await part.start()
            for _ in range(3):  # let the loop reach its wait
                await asyncio.sleep(0)
            service.wakes["idle"].set()  # work arrives in the same turn as the stop
            stopping = asyncio.create_task(part.stop())
            done, _ = await asyncio.wait({stopping}, timeout=30)  # a hang guard, not a limit
            if not done:
                for task in part.tasks:
                    task.cancel()
                return False
        return True

    # a thread of its own: a browser test in this worker may leave this thread's loop running
    assert run_apart(rounds), "a part woken as it was stopped ran on"
