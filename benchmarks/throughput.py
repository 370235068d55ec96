"""Throughput (issue #13): cases per minute to the acknowledgement delivered with 1 and 2 worker
processes and 2 and 4 clients, DATA->250 with 1, 2 and 4 clients, the acknowledgement's p95 at a
sustained 1 case/s from 2 clients, and peak memory per process; each beside the bare fsyncing
sink (benchmarks/baresink.py) measured in the same run with the same messages and clients.

`python -m benchmarks throughput [--quick]`; MAILFLOW_BENCH_SUSTAINED_SECONDS sets the sustained
pass's length (default 180 s; 30 s with --quick). Every server is a process of its own (`mailflow
serve`; with 2 workers also `mailflow worker`); this process is only the clients and pollers.
On SQLite, and on PostgreSQL too when MAILFLOW_TEST_POSTGRES_URL is set.

Targets: cases/min >= 0.7x the sink's accept rate (messages/min) for the same clients; DATA->250
p50 and p95 <= 1.3x the sink's; ack queued p95 < 2 s at 1 case/s; peak RSS < 300 MB a process.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Engine

from benchmarks import machine
from benchmarks.figures import pct, verdict
from benchmarks.intake.mail import Messages, Sent, message_template, send, send_concurrent
from benchmarks.intake.mail import textured_photo as photo
from benchmarks.intake.plan import ACK_P95_TARGET_MS, DATA_RATIO_TARGET, PG_URL, RSS_TARGET_MB
from benchmarks.intake.servers import (
    Server,
    bare_sink,
    descendants,
    mailflow_serve,
    make_config,
    postgres_schema,
    prepare,
    running,
    vm,
)
from benchmarks.intake.watch import AckWatcher
from mailflow.config import Config
from mailflow.db.models import OutboundMessage
from mailflow.store.tls import create_self_signed
from tests.support.sink import RelaySink

RATE_TARGET = 0.7  # cases/min to the ack delivered, against the sink's messages/min
BIG_BYTES = 40_000_000
NAMES = ("distribution.jpg", "closeup_front.jpg", "oblique_side.jpg")


@dataclass
class Figures:
    data_ms: dict[int, list[float]] = field(default_factory=dict)  # clients -> DATA->250
    rate: dict[tuple[int, int], float] = field(default_factory=dict)  # (workers, clients) -> /min
    sustained_ms: list[float] = field(default_factory=list)  # ack queued, at 1 case/s
    sustained_missing: int = 0
    rss: list[tuple[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _seconds(quick: bool) -> float:
    return float(os.environ.get("MAILFLOW_BENCH_SUSTAINED_SECONDS", 30 if quick else 180))


def run(quick: bool = False) -> None:
    per_client = 2 if quick else 6
    photos = [photo(seed) for seed in range(1, 10)]
    template = message_template(list(zip(NAMES, photos[:3], strict=True)))
    big = _big_message(photos)
    messages = Messages()
    print(machine.describe(f"clients send {per_client} cases each, back to back; the case email "
                           f"is {len(template) / 1e6:.1f} MB (3 photos of ~3 MB)"))
    print("note: the analysis pool runs at nice +10 ([intake] worker_nice), so any other work on "
          "the machine at nice 0 comes before it: read cases/min and the ack's p95 with the "
          "CPU the machine's other processes took (below)")
    watch = machine.CpuWatch()
    relay = RelaySink()
    relay.start()
    watch.start()
    try:
        with tempfile.TemporaryDirectory(prefix="mailflow-throughput-") as tmp_name:
            tmp = Path(tmp_name)
            bare = _bare(tmp, lambda: messages.make(template), per_client, big)
            databases: list[tuple[str, Callable[[], contextlib.AbstractContextManager[str]]]] = [
                (f"SQLite {sqlite3.sqlite_version}",
                 lambda: contextlib.nullcontext(f"sqlite:///{tmp}/mailflow.db"))]
            if PG_URL:
                databases.append(("PostgreSQL", postgres_schema))
            for label, database in databases:
                with database() as url:
                    mine = _mailflow(label, tmp, url, relay, messages, template, big, per_client,
                                     _seconds(quick))
                _print(label, bare, mine)
    finally:
        relay.stop()
        watch.stop()
    print(watch.report())


def _big_message(photos: list[bytes]) -> bytes:
    """A case email of nine photos and a text file that brings it to 40 MB."""
    names = [f"photo_{i}.jpg" for i in range(1, 10)]
    raw = message_template(list(zip(names, photos, strict=True)))
    files = list(zip(names, photos, strict=True))
    pad = max(0, BIG_BYTES - len(raw)) * 57 // 78  # base64 with line ends: 78 bytes per 57
    return message_template([*files, ("notes.txt", (b"notes " * (pad // 6 + 1))[:pad])])


def _bare(tmp: Path, make: Callable[[], bytes], per_client: int, big: bytes) -> Figures:
    figures = Figures()
    tls = tmp / "bare-tls"
    create_self_signed(tls, "bare.localhost")
    with running(lambda: bare_sink(tls, tmp / "bare-out", tmp / "bare.log")) as server:
        send(server.port, make())  # warm-up
        for clients in (1, 2, 4):
            start = time.perf_counter()
            sent = send_concurrent(server.port, clients, per_client if clients > 1 else 4, make)
            span = max(s.t_reply for s in sent) - start
            figures.data_ms[clients] = [s.data_ms for s in sent if s.code == 250]
            figures.rate[(0, clients)] = 60 * len(figures.data_ms[clients]) / span
        figures.rss.append(("bare sink, under load", vm(server.pid, "VmHWM")))
        send(server.port, big)
        figures.rss.append((f"bare sink, after a {len(big) / 1e6:.0f} MB message",
                            vm(server.pid, "VmHWM")))
    return figures


def _delivered(engine: Engine, refs: list[int]) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).where(
            OutboundMessage.cause_message_id.in_(refs), OutboundMessage.status == "sent")
        ).scalar_one())


def _wait_delivered(engine: Engine, refs: list[int], timeout: float) -> float | None:
    """perf_counter when every one of `refs` had its acknowledgement delivered; None if not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _delivered(engine, refs) >= len(refs):
            return time.perf_counter()
        time.sleep(0.05)
    return None


@contextlib.contextmanager
def _service(config: Config, base: Path, workers: int, notes: list[str]) -> Iterator[list[Server]]:
    """`mailflow serve`, and with 2 workers a `mailflow worker` beside it."""
    with running(lambda: mailflow_serve(config, base / f"serve-{workers}.log", notes=notes)) as s:
        if workers == 1:
            yield [s]
            return
        argv = [sys.executable, "-m", "mailflow", "--config",
                str(config.base_dir / "config.toml"), "worker"]
        with running(lambda: Server(argv, base / "worker.log", r"stop with Ctrl-C()")) as w:
            yield [s, w]


def _mailflow(label: str, tmp: Path, url: str, relay: RelaySink, messages: Messages,
              template: bytes, big: bytes, per_client: int, seconds: float) -> Figures:
    figures = Figures()
    base = tmp / label.split()[0].lower()
    config = make_config(base, url, relay.port)
    prepare(config)
    make = lambda: messages.make(template)  # noqa: E731
    engine = create_engine(config.database_url)
    watcher = AckWatcher(engine)
    watcher.start()
    try:
        for workers in (1, 2):
            with _service(config, base, workers, figures.notes) as servers:
                port = servers[0].port
                first = send(port, make())  # warm-up: imports, the pool, the first ack
                _wait_delivered(engine, [first.ref or 0], 120)
                for clients in ((1, 2, 4) if workers == 1 else (2, 4)):
                    _rate_pass(figures, engine, port, workers, clients, per_client, make)
                if workers == 1:
                    print(f"[{label}] sustained 1 case/s from 2 clients for {seconds:.0f} s",
                          flush=True)
                    _sustained(figures, watcher, port, seconds, make)
                _memory(figures, servers, f"{workers} worker{'s' if workers > 1 else ''}")
                if workers == 2:
                    sent = send(port, big)
                    ok = sent.ref is not None and _wait_delivered(engine, [sent.ref], 300)
                    figures.notes += [] if ok else [f"40 MB message: {sent.code} {sent.reply}"]
                    _memory(figures, servers, f"after a {len(big) / 1e6:.0f} MB message")
            figures.notes += [f"on stop: {x}" for s in servers for x in s.left_behind]
    finally:
        watcher.stop()
        engine.dispose()
    return figures


def _rate_pass(figures: Figures, engine: Engine, port: int, workers: int, clients: int,
               per_client: int, make: Callable[[], bytes]) -> None:
    print(f"  {workers} worker(s), {clients} client(s)", flush=True)
    start = time.perf_counter()
    sent = send_concurrent(port, clients, per_client if clients > 1 else 4, make)
    refs = [s.ref for s in sent if s.ref is not None]
    done = _wait_delivered(engine, refs, 600)
    if workers == 1:
        figures.data_ms[clients] = [s.data_ms for s in sent if s.code == 250]
    if clients > 1:
        figures.rate[(workers, clients)] = (
            60 * len(refs) / (done - start) if done is not None else 0.0)
    if done is None or len(refs) < len(sent):
        figures.notes.append(f"{workers} worker(s), {clients} clients: {len(sent) - len(refs)} "
                             f"refused, acks {'late' if done is None else 'all delivered'}")


def _sustained(figures: Figures, watcher: AckWatcher, port: int, seconds: float,
               make: Callable[[], bytes]) -> None:
    """Two clients, each sending a case every 2 s (offset by 1 s): 1 case/s in all."""
    start = time.perf_counter() + 0.5
    sent: list[Sent] = []
    lock = threading.Lock()

    def client(offset: float) -> None:
        k = 0
        while (due := start + offset + 2 * k) < start + seconds:
            time.sleep(max(0.0, due - time.perf_counter()))  # late: at once
            one = send(port, make())
            with lock:
                sent.append(one)
            k += 1

    threads = [threading.Thread(target=client, args=(o,)) for o in (0.0, 1.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    refs = [s.ref for s in sent if s.ref is not None]
    watcher.wait(refs, 120)
    for s in sent:
        if s.ref is not None and s.ref in watcher.seen:
            figures.sustained_ms.append((watcher.seen[s.ref] - s.t_data) * 1000)
        else:
            figures.sustained_missing += 1


def _memory(figures: Figures, servers: list[Server], when: str) -> None:
    for server, name in zip(servers, ("serve", "worker"), strict=False):
        with contextlib.suppress(OSError, KeyError):
            figures.rss.append((f"{name} ({when})", vm(server.pid, "VmHWM")))
            for kid in descendants(server.pid):
                figures.rss.append((f"  its child {kid} ({when})", vm(kid, "VmHWM")))


def _print(label: str, bare: Figures, mine: Figures) -> None:
    print(f"\n== mailflow on {label} ==")
    print(f"{'figure':<52}{'mailflow':>10}{'bare sink':>11}{'ratio':>8}  target")
    for clients in (1, 2, 4):
        for q in (50, 95):
            m, b = pct(mine.data_ms.get(clients, []), q), pct(bare.data_ms[clients], q)
            print(f"{f'DATA->250 p{q}, {clients} client(s) (ms)':<52}{m:>10.0f}{b:>11.0f}"
                  f"{m / b:>7.2f}x  <= {DATA_RATIO_TARGET}x {verdict(m / b <= DATA_RATIO_TARGET)}")
    for workers in (1, 2):
        for clients in (2, 4):
            m, b = mine.rate.get((workers, clients), 0.0), bare.rate[(0, clients)]
            print(f"{f'cases/min to ack delivered, {workers}w x {clients} clients':<52}"
                  f"{m:>10.0f}{b:>11.0f}{m / b:>7.2f}x  >= {RATE_TARGET}x "
                  f"{verdict(m / b >= RATE_TARGET)}")
    n = len(mine.sustained_ms)
    p95 = pct(mine.sustained_ms, 95)
    print(f"{f'ack queued p95 at 1 case/s, 2 clients (n={n})':<52}{p95:>10.0f}{'':>11}{'':>8}  "
          f"< {ACK_P95_TARGET_MS:.0f} ms "
          f"{verdict(p95 < ACK_P95_TARGET_MS and not mine.sustained_missing)}")
    print(f"{'  its p50 (ms)':<52}{pct(mine.sustained_ms, 50):>10.0f}")
    for name, mb in [*mine.rss, *bare.rss]:
        judged = not name.startswith("bare")
        print(f"{'peak RSS, ' + name + ' (MB)':<52}{mb:>10.0f}{'':>19}  "
              + (f"< {RSS_TARGET_MB:.0f} MB {verdict(mb < RSS_TARGET_MB)}" if judged else ""))
    for note in mine.notes:
        print("  " + note)
