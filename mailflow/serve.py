"""`mailflow serve`: the SMTP door, the worker and outbound delivery in one asyncio process.

The event loop only receives mail. Spooling (fsync + commit) runs on a small thread pool, the
worker and the deliverer each on their own thread, and parsing/photo decoding in a process
pool, so a large case never stalls the SMTP conversation of the next one.

A process that claims work (the worker or outbox part) registers itself as an instance; before
its loops start, and then on every heartbeat, it gives back the claims of instances that have
stopped (mailflow/instances.py), so a crashed worker's messages do not wait out a lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from mailflow.app import App
from mailflow.instances import Instance
from mailflow.intake.smtp import IntakeHandler, start_smtp
from mailflow.outbound.delivery import deliver_due
from mailflow.workflow.pool import AnalysisPool
from mailflow.workflow.worker import step

log = logging.getLogger(__name__)

PARTS = ("bus", "smtp", "imap", "worker", "outbox", "scheduler", "web")


@dataclass
class Service:
    app: App
    parts: tuple[str, ...] = PARTS
    smtp_port: int | None = None
    pool: AnalysisPool | None = None  # a shared pool (tests); else one is made and owned
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    smtp_address: tuple[str, int] | None = None
    web_port: int | None = None  # None: config's; 0: any free port (tests)
    web_address: tuple[str, int] | None = None
    imap: Any = None  # the IMAP door (intake/imap.py) while it runs
    instance: Instance | None = None  # this process as a holder of claims, while it runs

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        wake_worker = asyncio.Event()
        wake_outbox = asyncio.Event()
        spool_threads = ThreadPoolExecutor(4, thread_name_prefix="spool")
        worker_thread = ThreadPoolExecutor(1, thread_name_prefix="worker")
        outbox_thread = ThreadPoolExecutor(1, thread_name_prefix="outbox")
        imap_thread = ThreadPoolExecutor(1, thread_name_prefix="imap")
        imap_stop = threading.Event()
        imap_run: asyncio.Future[None] | None = None
        owned_pool = None
        if self.pool is None and "worker" in self.parts:
            owned_pool = AnalysisPool(self.app.config.intake.workers,
                                      nice=self.app.config.intake.worker_nice)
        pool = self.pool or owned_pool
        tasks: list[asyncio.Task[None]] = []
        server = None
        scheduler = None
        web_server = None
        broker = None
        try:
            if "bus" in self.parts and self.app.config.bus.enabled:
                from mailflow.bus import Broker

                broker = Broker(self.app.config)
                await loop.run_in_executor(None, broker.start)
            if self.app.config.bus.enabled and {"worker", "outbox"} & set(self.parts):
                # other processes' spooled messages and queued emails wake this one's loops
                tasks.append(asyncio.create_task(self._wake_on_events(wake_worker, wake_outbox)))
            if owned_pool is not None:
                await loop.run_in_executor(None, owned_pool.warm)
            if {"worker", "outbox"} & set(self.parts):
                self.instance = Instance(self.app)
                await loop.run_in_executor(None, self.instance.register)
                await loop.run_in_executor(None, self.instance.release_gone)
                tasks.append(asyncio.create_task(
                    self._heartbeat(self.instance, wake_worker, wake_outbox)))
            if "smtp" in self.parts:
                handler = IntakeHandler(
                    self.app, spool_threads, lambda _id: loop.call_soon_threadsafe(wake_worker.set)
                )
                server = await start_smtp(self.app, handler, port=self.smtp_port)
                sock = server.sockets[0].getsockname()
                self.smtp_address = (sock[0], sock[1])
            if "imap" in self.parts and self.app.config.imap.enabled:
                from mailflow.intake.imap import ImapIntake

                self.imap = ImapIntake(
                    self.app, lambda _id: loop.call_soon_threadsafe(wake_worker.set))
                imap_run = loop.run_in_executor(imap_thread, self.imap.run, imap_stop)
            if "worker" in self.parts:
                tasks.append(
                    asyncio.create_task(
                        self._loop(
                            "worker",
                            wake_worker,
                            worker_thread,
                            lambda: step(self.app, pool, instance=self._instance_id),
                            on_work=wake_outbox.set,
                            poll=self.app.config.intake.poll_seconds,
                        )
                    )
                )
            if "outbox" in self.parts:
                tasks.append(
                    asyncio.create_task(
                        self._loop(
                            "outbox",
                            wake_outbox,
                            outbox_thread,
                            lambda: deliver_due(self.app, instance=self._instance_id),
                            poll=self.app.config.outbound.poll_seconds,
                        )
                    )
                )
            if "scheduler" in self.parts:
                from mailflow.workflow.scheduler import SlaScheduler

                scheduler = SlaScheduler(self.app)
                await loop.run_in_executor(None, scheduler.start)
            if "web" in self.parts:
                web_server, web_task = await self._start_web()
                tasks.append(web_task)
            self.ready.set()
            await self.stop_event.wait()
            if web_server is not None:
                web_server.config.app.state.live.close()  # open live pages end their streams
                web_server.should_exit = True
                # requests under way get shutdown_seconds to finish (uvicorn's own grace)
                await asyncio.wait([web_task], timeout=self.app.config.web.shutdown_seconds + 1)
        finally:
            if scheduler is not None:
                await loop.run_in_executor(None, scheduler.stop)
            if server is not None:
                server.close()
                await server.wait_closed()
            imap_stop.set()
            if imap_run is not None:
                await asyncio.gather(imap_run, return_exceptions=True)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for executor in (spool_threads, worker_thread, outbox_thread, imap_thread):
                executor.shutdown(wait=True)
            if self.instance is not None:  # nothing of ours is under way any more
                try:
                    await loop.run_in_executor(None, self.instance.close)
                except Exception:  # the next start-up or heartbeat elsewhere does it
                    log.exception("could not unregister instance %s", self.instance.id)
            if owned_pool is not None:
                owned_pool.shutdown()
            if broker is not None:
                await loop.run_in_executor(None, broker.stop)

    @property
    def _instance_id(self) -> str | None:
        return self.instance.id if self.instance is not None else None

    async def _heartbeat(self, instance: Instance, wake_worker: asyncio.Event,
                         wake_outbox: asyncio.Event) -> None:
        """Say this process is alive; give back the claims of processes that are not."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.app.config.recovery.heartbeat_seconds)
            try:
                await loop.run_in_executor(None, instance.beat)
                if await loop.run_in_executor(None, instance.release_gone):
                    wake_worker.set()
                    wake_outbox.set()
            except Exception:
                log.exception("heartbeat failed; trying again at the next one")

    async def _wake_on_events(self, wake_worker: asyncio.Event, wake_outbox: asyncio.Event
                              ) -> None:
        from mailflow.bus import listen

        async for event in listen(self.app.config, topics=("message", "outbox")):
            (wake_worker if event.get("topic") == "message" else wake_outbox).set()

    async def _start_web(self) -> tuple[Any, asyncio.Task[None]]:
        """uvicorn in this event loop: its endpoints run on threads, so pages never hold up
        the SMTP door."""
        import socket

        import uvicorn

        from mailflow.web.app import create_web_app

        cfg = self.app.config.web
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
        # and without it every response waited 40 ms for a delayed ACK (Nagle)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((cfg.host, cfg.port if self.web_port is None else self.web_port))
        self.web_address = sock.getsockname()[:2]
        server = uvicorn.Server(uvicorn.Config(
            create_web_app(self.app), log_level="warning", access_log=False, lifespan="off",
            timeout_graceful_shutdown=self.app.config.web.shutdown_seconds,
        ))
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        return server, task

    async def _loop(
        self,
        name: str,
        wake: asyncio.Event,
        thread: Executor,
        step: Callable[[], int],
        poll: float,
        on_work: Callable[[], None] | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            wake.clear()
            try:
                done = await loop.run_in_executor(thread, step)
            except Exception:
                log.exception("%s step failed; retrying after the poll interval", name)
                done = 0
            if done:
                if on_work is not None:
                    on_work()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=poll)

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
