"""The measured runs: the bare sink, then mailflow (serve, then the SMTP door alone)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from benchmarks import machine
from benchmarks.intake.mail import LoopProbe, Messages, Sent, send, send_concurrent, send_sequential
from benchmarks.intake.plan import Plan
from benchmarks.intake.servers import (
    Server,
    bare_sink,
    cmdline,
    descendants,
    mailflow_serve,
    make_config,
    prepare,
    running,
    vm,
)
from benchmarks.intake.watch import (
    AckWatcher,
    Memory,
    Pass,
    Result,
    ack_times,
    wait_sent,
    worker_breakdown,
)
from mailflow.config import Config
from tests.support.sink import RelaySink


class Progress:
    """Time since the run began, and the CPU other processes took (set by `run`)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.watch: machine.CpuWatch | None = None

    def begin(self, watch: machine.CpuWatch | None) -> float:
        self.started, self.watch = time.monotonic(), watch
        return self.started

    def say(self, what: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f} s] {what}", flush=True)


PROGRESS = Progress()


@contextmanager
def phase(result: Result, name: str) -> Iterator[None]:
    """Note the pass in the result when other processes took CPU while it ran."""
    PROGRESS.say(f"{result.label}: {name}")
    watch = PROGRESS.watch
    started, before = time.monotonic(), watch.other_seconds() if watch else 0.0
    yield
    if watch is not None:
        share = (watch.other_seconds() - before) / max(time.monotonic() - started, 1e-9)
        if share > 0.10:
            result.notes.append(
                f"DISTURBED: other processes took {share:.0%} of a core during '{name}'"
            )


def server_memory(pid: int, size: int, idle: float, ok: bool) -> Memory:
    time.sleep(0.2)
    memory = Memory(size, vm(pid, "VmHWM"), idle, ok=ok)
    for kid in descendants(pid):
        role = "resource tracker" if "resource_tracker" in cmdline(kid) else "pool worker"
        with suppress(OSError, KeyError):
            memory.children.append((role, vm(kid, "VmHWM")))
    return memory


def measure_bare(
    tmp: Path, tls_dir: Path, plan: Plan, messages: Messages, template: bytes, big: bytes
) -> Result:
    """One fresh process: the 25 MB message first (peak RSS; it is also the warm-up), then the
    timed passes."""
    result = Result("bare sink")
    make = lambda: messages.make(template)  # noqa: E731
    with running(lambda: bare_sink(tls_dir, tmp / "bare-out", tmp / "bare.log")) as server:
        with phase(result, f"{len(big) / 1e6:.0f} MB message for peak RSS"):
            idle = vm(server.pid, "VmRSS")
            sent = send(server.port, messages.make(big))
            result.memory = server_memory(server.pid, len(big), idle, sent.code == 250)
        with phase(result, f"{plan.sequential} messages one after another"):
            seq = send_sequential(server.port, plan.sequential, make)
            result.passes["seq"] = Pass("sequential", seq)
        with phase(result, f"{plan.clients} clients x {plan.per_client} messages"):
            with LoopProbe(server.port) as probe:
                start = time.perf_counter()
                conc = send_concurrent(server.port, plan.clients, plan.per_client, make)
            result.passes["conc"] = Pass("concurrent", conc, probe_ms=probe.between(start, 1e18))
            result.notes += [f"loop probe: {probe.error}"] if probe.error else []
    result.notes += [f"on stop: {x}" for x in server.left_behind]
    return result


Make = Callable[[], bytes]


def measure_mailflow(
    label: str,
    db_url: str,
    tmp: Path,
    plan: Plan,
    relay: RelaySink,
    messages: Messages,
    template: bytes,
    big: bytes,
) -> Result:
    """One fresh `mailflow serve`: the 25 MB message first (peak RSS; it is also the warm-up:
    imports, the pool process, the first ack and delivery), then the timed passes."""
    result = Result(label)
    base = tmp / f"mailflow-{label.split()[0].lower()}"
    config = make_config(base, db_url, relay.port)
    prepare(config)
    make = lambda: messages.make(template)  # noqa: E731
    engine = create_engine(config.database_url)
    watcher = AckWatcher(engine)
    watcher.start()
    try:
        with running(
            lambda: mailflow_serve(config, base / "serve.log", notes=result.notes)
        ) as server:
            _big_message(result, server, engine, watcher, messages.make(big), len(big))
            _sequential(result, server, engine, watcher, plan, make)
            _concurrent(result, server, watcher, plan, make)
            if plan.paced:
                _paced(result, server, engine, watcher, plan, make)
        result.notes += [f"on stop: {x}" for x in server.left_behind]
        _door_alone(result, config, base, plan, make)
    finally:
        watcher.stop()
        engine.dispose()
    return result


def _big_message(result: Result, server: Server, engine: Engine, watcher: AckWatcher,
                 raw: bytes, size: int) -> None:
    with phase(result, f"{size / 1e6:.0f} MB message for peak RSS"):
        idle = vm(server.pid, "VmRSS")
        sent = send(server.port, raw)
        ok = sent.ref is not None and wait_sent(engine, sent.ref, 120, watcher)
        result.memory = server_memory(server.pid, size, idle, ok)
        if not ok:
            why = watcher.failed.get(sent.ref or 0, "no ack delivered in 120 s")
            result.notes.append(f"FAILED: 25 MB message: {sent.code} {sent.reply}; {why}")


def _sequential(result: Result, server: Server, engine: Engine, watcher: AckWatcher,
                plan: Plan, make: Make) -> None:
    with phase(result, f"{plan.sequential} messages one after another"):
        seq = Pass("sequential", send_sequential(server.port, plan.sequential, make))
        ack_times(seq, watcher, 180)
        result.passes["seq"] = seq
        refs = [s.ref for s in seq.sent if s.ref is not None]
        result.notes.append("sequential: " + worker_breakdown(engine, refs))


def _concurrent(result: Result, server: Server, watcher: AckWatcher, plan: Plan,
                make: Make) -> None:
    with phase(result, f"{plan.clients} clients x {plan.per_client} messages"):
        with LoopProbe(server.port) as probe:
            start = time.perf_counter()
            sent_list = send_concurrent(server.port, plan.clients, plan.per_client, make)
            conc = Pass("concurrent", sent_list)
            sent_all = time.perf_counter()
            ack_times(conc, watcher, 180)
            acked_all = time.perf_counter()
        conc.probe_ms = probe.between(start, sent_all)
        conc.probe_after_ms = probe.between(sent_all, acked_all)
        result.passes["conc"] = conc
        result.notes += [f"loop probe: {probe.error}"] if probe.error else []


def _paced(result: Result, server: Server, engine: Engine, watcher: AckWatcher, plan: Plan,
           make: Make) -> None:
    def after(sent: Sent) -> None:
        if sent.ref is not None:
            watcher.wait([sent.ref], 60)

    with phase(result, f"{plan.paced} messages, each after the previous ack"):
        paced = Pass("paced", send_sequential(server.port, plan.paced, make, after))
        ack_times(paced, watcher, 60)
        result.passes["paced"] = paced
        refs = [s.ref for s in paced.sent if s.ref is not None]
        result.notes.append("paced: " + worker_breakdown(engine, refs))


def _door_alone(result: Result, config: Config, base: Path, plan: Plan, make: Make) -> None:
    """The SMTP door alone (`mailflow smtpd`, no worker): what the door itself costs under two
    clients, apart from the CPU the worker takes. Its messages are never processed."""
    with (
        running(
            lambda: mailflow_serve(config, base / "smtpd.log", "smtpd", result.notes)
        ) as server,
        phase(result, f"SMTP door alone, {plan.clients} clients x {plan.door} messages"),
    ):
        send(server.port, make())  # warm-up
        with LoopProbe(server.port) as probe:
            start = time.perf_counter()
            door = send_concurrent(server.port, plan.clients, plan.door, make)
        result.passes["door"] = Pass("door", door, probe_ms=probe.between(start, 1e18))
    result.notes += [f"on stop: {x}" for x in server.left_behind]
