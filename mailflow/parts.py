"""The parts `mailflow serve` can run, each started and stopped the same way (serve.PARTS).

A part gets the Service (what the process shares: the app, the wake-up events, the process
instance) and has `start()` and `stop()`. The doors wake the worker when they spool a message;
each runner part drives a runner (mailflow/runner.py) on a thread of its own (the worker one per
analysis process) and wakes the parts downstream of it when it did some work (the worker wakes
the reports and the outbox, the reports wake the outbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar

from mailflow.outbound.delivery import OutboxRunner
from mailflow.runner import Runner
from mailflow.workflow.pool import AnalysisPool
from mailflow.workflow.report_runner import ReportRunner
from mailflow.workflow.worker import InboundRunner

if TYPE_CHECKING:
    from mailflow.serve import Service

log = logging.getLogger(__name__)

SPOOL_THREADS = 4  # spooling is fsync + commit: a few at once keep the SMTP door answering
IN_HAND_POLL = 0.05  # a graceful stop looks this often whether the messages in hand are done


class Part(ABC):
    claims: ClassVar[bool] = False  # holds claims: the process must be a registered instance

    def __init__(self, service: Service) -> None:
        self.service = service
        self.app = service.app

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None:
        """Undo what `start` did, also when it stopped half-way."""


async def _shut(executor: ThreadPoolExecutor) -> None:
    """Wait for the executor's work under way without holding up the event loop."""
    await asyncio.get_running_loop().run_in_executor(None, executor.shutdown)


class BusPart(Part):
    """The event broker ([bus] enabled)."""

    broker: Any = None

    async def start(self) -> None:
        if not self.app.config.bus.enabled:
            return
        from mailflow.bus import Broker

        self.broker = Broker(self.app.config)
        await asyncio.get_running_loop().run_in_executor(None, self.broker.start)

    async def stop(self) -> None:
        if self.broker is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.broker.stop)


class SmtpPart(Part):
    """The SMTP door: the event loop receives, a few threads spool."""

    server: asyncio.Server | None = None
    threads: ThreadPoolExecutor | None = None
    handler: Any = None  # the IntakeHandler, while started

    async def start(self) -> None:
        from mailflow.intake.smtp import IntakeHandler, start_smtp

        self.threads = ThreadPoolExecutor(SPOOL_THREADS, thread_name_prefix="spool")
        self.handler = handler = IntakeHandler(self.app, self.threads,
                                               self.service.waker("worker"))
        self.server = await start_smtp(self.app, handler, port=self.service.smtp_port)
        host, port = self.server.sockets[0].getsockname()[:2]
        self.service.smtp_address = (host, port)

    async def stop(self) -> None:
        """Gracefully: the messages in hand finish (their 250 means spooled) while new
        connections and new MAILs are answered 421 4.3.2, so clients retry elsewhere or later;
        then the idle connections are told the same and closed."""
        if self.server is not None:
            await self._finish_in_hand()
            self.server.close()
            for connection in list(self.handler.connections.open):
                connection.shut()
            await self.server.wait_closed()
        if self.threads is not None:
            await _shut(self.threads)

    async def _finish_in_hand(self) -> None:
        connections = self.handler.connections
        connections.closing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.app.config.smtp.shutdown_seconds
        while connections.in_hand() and loop.time() < deadline:
            await asyncio.sleep(IN_HAND_POLL)
        if connections.in_hand():
            log.warning("smtp: stopped with %d message(s) unfinished after %ss; their senders "
                        "had no 250 and will send again", connections.in_hand(),
                        self.app.config.smtp.shutdown_seconds)


class ImapPart(Part):
    """The IMAP door ([imap] enabled), on its own thread."""

    running: asyncio.Future[None] | None = None

    async def start(self) -> None:
        if not self.app.config.imap.enabled:
            return
        from mailflow.intake.imap import ImapIntake

        self.thread = ThreadPoolExecutor(1, thread_name_prefix="imap")
        self.halt = threading.Event()
        self.service.imap = ImapIntake(self.app, self.service.waker("worker"))
        loop = asyncio.get_running_loop()
        self.running = loop.run_in_executor(self.thread, self.service.imap.run, self.halt)

    async def stop(self) -> None:
        if self.running is None:
            return
        self.halt.set()
        await asyncio.gather(self.running, return_exceptions=True)
        await _shut(self.thread)


class RunnerPart(Part):
    """A runner's loop on its own thread; `loops()` of them, each with its own runner and
    thread, when the work of one row is mostly waiting for something else (the pool)."""

    claims = True
    runner_class: ClassVar[type[Runner[Any, Any]]]
    then: ClassVar[tuple[str, ...]] = ()  # the parts that may have work once this one did
    tasks: list[asyncio.Task[None]]
    threads: list[ThreadPoolExecutor]

    def make_runner(self) -> Runner[Any, Any]:
        return self.runner_class(self.app, instance=self.service.instance_id)

    def loops(self) -> int:
        return 1

    async def start(self) -> None:
        self.tasks, self.threads = [], []
        self.stopping = asyncio.Event()
        self.wake = self.service.wakes[self.runner_class.name]  # one wake-up for all the loops
        for _ in range(self.loops()):
            runner = self.make_runner()
            thread = ThreadPoolExecutor(1, thread_name_prefix=runner.name)
            self.threads.append(thread)
            self.tasks.append(asyncio.create_task(
                runner.serve_forever(thread, self.wake, self._did_work, self.stopping)))

    def _did_work(self) -> None:
        for name in self.then:
            self.service.wakes[name].set()

    async def stop(self) -> None:
        if not getattr(self, "tasks", None):
            return
        self.stopping.set()
        self.wake.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)  # after the turns under way
        for thread in self.threads:
            await _shut(thread)


class WorkerPart(RunnerPart):
    """Spooled messages, analysed in a process pool (one is made unless the service has one).

    As many loops as the pool has processes ([intake] workers): a loop waits for its message's
    analysis most of the time, so with one loop the other processes sat idle; with one each,
    one message is routed (database) while others are analysed (CPU)."""

    runner_class = InboundRunner
    then = ("reports", "outbox")
    owned_pool: AnalysisPool | None = None

    def make_runner(self) -> Runner[Any, Any]:
        pool = self.service.pool or self.owned_pool
        return InboundRunner(self.app, pool, instance=self.service.instance_id)

    def loops(self) -> int:
        return self.app.config.intake.workers

    async def start(self) -> None:
        if self.service.pool is None:
            intake = self.app.config.intake
            self.owned_pool = AnalysisPool(intake.workers, nice=intake.worker_nice)
            await asyncio.get_running_loop().run_in_executor(None, self.owned_pool.warm)
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        if self.owned_pool is not None:
            self.owned_pool.shutdown()


class ReportsPart(RunnerPart):
    runner_class = ReportRunner
    then = ("outbox",)


class OutboxPart(RunnerPart):
    runner_class = OutboxRunner


class SchedulerPart(Part):
    """The SLA timers and the daily retention run."""

    scheduler: Any = None

    async def start(self) -> None:
        from mailflow.workflow.scheduler import SlaScheduler

        self.scheduler = SlaScheduler(self.app)
        await asyncio.get_running_loop().run_in_executor(None, self.scheduler.start)

    async def stop(self) -> None:
        if self.scheduler is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.scheduler.stop)


class WebPart(Part):
    """uvicorn in this event loop: its endpoints run on threads, so pages never hold up the
    SMTP door."""

    server: Any = None
    task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        import uvicorn

        from mailflow.web.app import create_web_app

        cfg = self.app.config.web
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
        # and without it every response waited 40 ms for a delayed ACK (Nagle)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        web_port = self.service.web_port
        sock.bind((cfg.host, cfg.port if web_port is None else web_port))
        self.service.web_address = sock.getsockname()[:2]
        self.server = uvicorn.Server(uvicorn.Config(
            create_web_app(self.app), log_level="warning", access_log=False, lifespan="off",
            timeout_graceful_shutdown=cfg.shutdown_seconds,
        ))
        self.server.install_signal_handlers = lambda: None
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self.task is None:
            return
        if self.server.started:
            self.server.config.app.state.live.close()  # open live pages end their streams
            self.server.should_exit = True
            # requests under way get shutdown_seconds to finish (uvicorn's own grace)
            await asyncio.wait([self.task], timeout=self.app.config.web.shutdown_seconds + 1)
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task

