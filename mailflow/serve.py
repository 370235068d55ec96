"""`mailflow serve`: the parts of the service in one asyncio process, started from one table.

The event loop only receives mail. Spooling (fsync + commit) runs on a small thread pool, each
runner (the worker, the reports, the outbox) on its own thread, and parsing/photo decoding in
a process pool, so a large case never stalls the SMTP conversation of the next one.

`PARTS` names every part in the order they start (they stop in the reverse order); `mailflow
serve` runs them all and the one-part commands (`mailflow smtpd`, `worker`, `reports`, ...)
a few. A process that runs a runner registers itself as an instance; before its runners
start, and then on every heartbeat, it gives back the claims of instances that have stopped
(mailflow/instances.py), so a crashed worker's messages do not wait out a lease.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mailflow.app import App
from mailflow.instances import Instance
from mailflow.parts import (
    BusPart,
    ImapPart,
    OutboxPart,
    Part,
    ReportsPart,
    RunnerPart,
    SchedulerPart,
    SmtpPart,
    WebPart,
    WorkerPart,
)
from mailflow.workflow.pool import AnalysisPool

log = logging.getLogger(__name__)

PARTS: dict[str, type[Part]] = {
    "bus": BusPart,  # first: the others announce their changes on it
    "smtp": SmtpPart,
    "imap": ImapPart,
    "worker": WorkerPart,
    "reports": ReportsPart,
    "outbox": OutboxPart,
    "scheduler": SchedulerPart,
    "web": WebPart,
}
ALL = tuple(PARTS)


def runner_parts(parts: tuple[str, ...]) -> dict[str, type[RunnerPart]]:
    return {name: part for name, part in PARTS.items()
            if name in parts and issubclass(part, RunnerPart)}


@dataclass
class Service:
    app: App
    parts: tuple[str, ...] = ALL
    smtp_port: int | None = None
    pool: AnalysisPool | None = None  # a shared pool (tests); else the worker makes its own
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    smtp_address: tuple[str, int] | None = None
    web_port: int | None = None  # None: config's; 0: any free port (tests)
    web_address: tuple[str, int] | None = None
    imap: Any = None  # the IMAP door (intake/imap.py) while it runs
    instance: Instance | None = None  # this process as a holder of claims, while it runs
    wakes: dict[str, asyncio.Event] = field(default_factory=dict)  # a runner's: work may wait

    async def run(self) -> None:
        unknown = set(self.parts) - set(PARTS)
        if unknown:
            raise ValueError(f"no such part: {', '.join(sorted(unknown))}")
        runners = runner_parts(self.parts)
        self.wakes = {name: asyncio.Event() for name, part in PARTS.items()
                      if issubclass(part, RunnerPart)}
        started: list[Part] = []
        background: list[asyncio.Task[None]] = []
        try:
            if runners:
                background += await self._hold_claims()
                if self.app.config.bus.enabled:  # other processes' changes wake our runners
                    background.append(asyncio.create_task(self._wake_on_events(runners)))
            for name, part_class in PARTS.items():
                if name in self.parts:
                    part = part_class(self)
                    started.append(part)
                    await part.start()
            self.ready.set()
            await self.stop_event.wait()
        finally:
            for part in reversed(started):
                try:
                    await part.stop()
                except Exception:
                    log.exception("%s did not stop cleanly", type(part).__name__)
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self._let_go()

    @property
    def instance_id(self) -> str | None:
        return self.instance.id if self.instance is not None else None

    def waker(self, name: str) -> Callable[[int], None]:
        """A callback for any thread (a door that spooled a message): wake a runner part."""
        loop = asyncio.get_running_loop()
        wake = self.wakes[name]
        return lambda _id: loop.call_soon_threadsafe(wake.set)

    def wake_all(self) -> None:
        for wake in self.wakes.values():
            wake.set()

    async def _hold_claims(self) -> list[asyncio.Task[None]]:
        loop = asyncio.get_running_loop()
        self.instance = Instance(self.app)
        await loop.run_in_executor(None, self.instance.register)
        await loop.run_in_executor(None, self.instance.release_gone)
        return [asyncio.create_task(self._heartbeat(self.instance))]

    async def _let_go(self) -> None:
        if self.instance is None:
            return
        try:  # nothing of ours is under way any more
            await asyncio.get_running_loop().run_in_executor(None, self.instance.close)
        except Exception:  # the next start-up or heartbeat elsewhere does it
            log.exception("could not unregister instance %s", self.instance.id)

    async def _heartbeat(self, instance: Instance) -> None:
        """Say this process is alive; give back the claims of processes that are not."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.app.config.recovery.heartbeat_seconds)
            try:
                await loop.run_in_executor(None, instance.beat)
                if await loop.run_in_executor(None, instance.release_gone):
                    self.wake_all()
            except Exception:
                log.exception("heartbeat failed; trying again at the next one")

    async def _wake_on_events(self, runners: dict[str, type[RunnerPart]]) -> None:
        from mailflow.bus import listen

        wakes_for: dict[str, list[asyncio.Event]] = {}
        for name, part in runners.items():
            for topic in part.runner_class.wake_topics:
                wakes_for.setdefault(topic, []).append(self.wakes[name])
        async for event in listen(self.app.config, topics=tuple(wakes_for)):
            for wake in wakes_for.get(event.get("topic", ""), ()):
                wake.set()

    def stop(self) -> None:
        self.stop_event.set()


def run_forever(app: App, parts: tuple[str, ...], announce: Callable[[Service], None]) -> None:
    async def main() -> None:
        service = Service(app, parts)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, service.stop)
        runner = asyncio.create_task(service.run())
        ready = asyncio.create_task(service.ready.wait())
        await asyncio.wait({runner, ready}, return_when=asyncio.FIRST_COMPLETED)
        if service.ready.is_set():
            announce(service)
        await runner

    asyncio.run(main())
