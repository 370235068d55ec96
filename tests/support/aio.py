"""A coroutine run to its end on a thread of its own.

A browser test's Playwright (sync API) leaves an event loop running on the main thread of the
xdist worker it ran in, so a later test there cannot `asyncio.run` on that thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_apart(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """`asyncio.run(make())` on a new thread; its result, or what it raised."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def body() -> None:
        try:
            outcome.append(asyncio.run(make()))
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=body, name="run-apart")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]
