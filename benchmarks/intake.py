"""Intake benchmark: the SMTP accept path and the time to the acknowledgement, beside a baseline.

Every server runs in its own process (`python -m mailflow serve`, `python -m benchmarks.baresink`)
so its CPU and memory are its own; this process is only the clients and a poller.

1. Baseline: a bare aiosmtpd (STARTTLS + AUTH, writes the message to a file and fsyncs it).
2. mailflow: the real service (SMTP door, worker, outbox) with a real aiosmtpd relay sink.
   DATA->250 is timed around `smtp.data(raw)` alone (connection, STARTTLS, AUTH, MAIL and RCPT
   before the timer). DATA->ack queued is the first time a poller (every 5 ms) sees the
   outbound_messages row whose cause_message_id is the number in the 250 reply.
3. Peak RSS (VmHWM) of each server process for one 25 MB message.

On SQLite in a temporary folder, and also on PostgreSQL (its own schema) when
MAILFLOW_TEST_POSTGRES_URL is set. Targets (issue): DATA->250 within 1.3x of the bare sink,
ack queued p95 under 2 s, peak RSS under 300 MB. A missed target is printed MISSED, not raised.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import signal
import smtplib
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from PIL import Image, ImageChops
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import Engine

from benchmarks import machine
from mailflow.app import App, initialise
from mailflow.config import Config, load_config
from mailflow.db.models import InboundMessage, MessageStatus, OutboundMessage
from mailflow.db.session import transaction
from mailflow.store.tls import create_self_signed
from mailflow.workflow import accounts
from tests.support.images import skin_photo
from tests.support.mail import FULL_FORM, case_email, client_context
from tests.support.sink import RelaySink

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("MAILFLOW_TEST_POSTGRES_URL", "")

PROVIDER = "dr.bench@clinic.test"
PASSWORD = "correct horse battery"
CASES = "cases@derm.localhost"
PHOTO_SIZE = (4000, 3000)  # 12 megapixels
CASE_PHOTOS = ("distribution.jpg", "closeup_front.jpg", "oblique_side.jpg")
EXTRA_PHOTOS = ("distribution_2.jpg", "closeup_2.jpg", "oblique_2.jpg")
TOKEN = b"BENCH-0000000000"  # replaced per message by a unique token of the same width
BIG_TARGET = 25_000_000

DATA_RATIO_TARGET = 1.3
ACK_P95_TARGET_MS = 2000.0
RSS_TARGET_MB = 300.0


@dataclass(frozen=True)
class Plan:
    sequential: int  # messages sent one after another, back to back
    per_client: int  # messages per client in the two-client pass
    paced: int  # messages sent one at a time, each after the previous ack (idle latency)
    door: int  # messages per client to `mailflow smtpd` alone (the door without the worker)
    clients: int = 2


FULL = Plan(sequential=20, per_client=10, paced=5, door=6)
QUICK = Plan(sequential=4, per_client=2, paced=0, door=2)


# --------------------------------------------------------------------------- messages


PHOTO_CACHE = Path(tempfile.gettempdir()) / "mailflow-bench-photos-v1"


def textured_photo(seed: int) -> bytes:
    """A ~3 MB 12 MP JPEG: the test suite's synthetic skin photo plus fine sensor-like noise.
    Made once and kept in PHOTO_CACHE (0.6 s each to make)."""
    path = PHOTO_CACHE / f"skin-{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}-{seed}.jpg"
    with suppress(OSError):
        data = path.read_bytes()
        if data.startswith(b"\xff\xd8") and data.endswith(b"\xff\xd9"):
            return data
    base = Image.open(io.BytesIO(skin_photo(*PHOTO_SIZE, seed=seed))).convert("RGB")
    noise = Image.effect_noise(PHOTO_SIZE, 4).convert("RGB")
    img = ImageChops.add(base, noise, 1.0, -128)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    data = out.getvalue()
    with suppress(OSError):
        PHOTO_CACHE.mkdir(exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        tmp.replace(path)
    return data


def message_template(photos: Sequence[tuple[str, bytes]]) -> bytes:
    body = FULL_FORM + f"\nBenchmark reference: {TOKEN.decode()}\n"
    msg = case_email(
        PROVIDER, CASES, body, photos, headers={"Message-ID": f"<{TOKEN.decode()}@client.test>"}
    )
    raw = re.sub(rb"(?<!\r)\n", b"\r\n", msg.as_bytes())
    assert raw.count(TOKEN) == 2, "the per-message token must be in a header and the body"
    return raw


class Messages:
    """Unique instances of a template: a new Message-ID and body line each (no de-duplication)."""

    def __init__(self) -> None:
        self.run = secrets.token_hex(3)
        self.counter = 0
        self.lock = threading.Lock()

    def make(self, template: bytes) -> bytes:
        with self.lock:
            self.counter += 1
            token = f"BENCH-{self.run}{self.counter:04d}".encode()
        assert len(token) == len(TOKEN)
        return template.replace(TOKEN, token)


# --------------------------------------------------------------------------- client


@dataclass(frozen=True)
class Sent:
    ref: int | None  # the number in "250 2.0.0 Accepted as message N"
    code: int
    reply: str
    t_data: float  # perf_counter when DATA was sent
    t_reply: float  # perf_counter when its final reply arrived

    @property
    def data_ms(self) -> float:
        return (self.t_reply - self.t_data) * 1000


def send(port: int, raw: bytes) -> Sent:
    """One message on its own connection; only smtp.data(raw) is inside the timer."""
    with smtplib.SMTP("127.0.0.1", port, timeout=180) as smtp:
        smtp.ehlo("client.test")
        smtp.starttls(context=client_context())
        smtp.ehlo("client.test")
        smtp.login(PROVIDER, PASSWORD)
        code, reply = smtp.mail(PROVIDER)
        if code == 250:
            code, reply = smtp.rcpt(CASES)
        if code not in (250, 251):
            now = time.perf_counter()
            return Sent(None, code, reply.decode(errors="replace"), now, now)
        t_data = time.perf_counter()
        code, reply = smtp.data(raw)
        t_reply = time.perf_counter()
    text_ = reply.decode(errors="replace")
    found = re.search(r"message (\d+)", text_)
    ref = int(found.group(1)) if code == 250 and found else None
    return Sent(ref, code, text_, t_data, t_reply)


def send_sequential(
    port: int, count: int, make: Callable[[], bytes], between: Callable[[Sent], None] | None = None
) -> list[Sent]:
    out = []
    for _ in range(count):
        sent = send(port, make())
        out.append(sent)
        if between is not None:
            between(sent)
    return out


def send_concurrent(port: int, clients: int, each: int, make: Callable[[], bytes]) -> list[Sent]:
    results: list[list[Sent]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            results[i] = send_sequential(port, each, make)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [s for r in results for s in r]


class LoopProbe(threading.Thread):
    """An authenticated, otherwise idle connection that sends NOOP every 20 ms: its round trip
    shows how long the server's event loop goes without answering while others send."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.samples: list[tuple[float, float]] = []  # (perf_counter at send, round trip ms)
        self._halt = threading.Event()
        self._ready = threading.Event()
        self.error = ""

    def run(self) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=60) as smtp:
                smtp.ehlo("probe.test")
                smtp.starttls(context=client_context())
                smtp.ehlo("probe.test")
                smtp.login(PROVIDER, PASSWORD)
                self._ready.set()
                while not self._halt.wait(0.02):
                    t = time.perf_counter()
                    smtp.noop()
                    self.samples.append((t, (time.perf_counter() - t) * 1000))
        except (OSError, smtplib.SMTPException) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self._ready.set()

    def between(self, start: float, end: float) -> list[float]:
        return [ms for t, ms in self.samples if start <= t < end]

    def __enter__(self) -> LoopProbe:
        self.start()
        self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self.join(30)


# --------------------------------------------------------------------------- servers


def vm(pid: int, key: str) -> float:
    """A Vm* figure of /proc/PID/status, in MB (10^6 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024 / 1e6
    raise KeyError(key)


def descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for kid in map(int, kids):
            found += [kid, *descendants(kid)]
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class Server:
    """A server subprocess; ready when its log shows the pattern (whose last group is the port)."""

    def __init__(self, argv: list[str], log_path: Path, ready: str) -> None:
        self.log_path = log_path
        self.ready = re.compile(ready)
        env = {k: v for k, v in os.environ.items() if not (k.startswith("MAILFLOW_") and "__" in k)}
        env["PYTHONUNBUFFERED"] = "1"
        self.left_behind: list[str] = []
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.port = self._wait_ready(90)

    def _wait_ready(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.ready.search(self.log_path.read_text(errors="replace"))
            if found:
                return int(found.groups()[-1])
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.proc.args} did not start:\n{self.log_path.read_text()[-3000:]}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        """SIGTERM, as an operator would; then any process it left behind is noted and ended."""
        kids = descendants(self.proc.pid) if self.proc.poll() is None else []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                tail = self.log_path.read_text(errors="replace").splitlines()[-3:]
                self.left_behind.append(
                    f"pid {self.proc.pid} did not exit within 20 s of SIGTERM (killed); "
                    "its log ended:\n      " + "\n      ".join(line[:150] for line in tail)
                )
                self.proc.kill()
                self.proc.wait()
        deadline = time.monotonic() + 3
        alive = kids
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = [k for k in alive if Path(f"/proc/{k}").exists() and _running(k)]
        for kid in alive:
            self.left_behind.append(f"child {kid} outlived it (killed): {cmdline(kid)[:60]}...")
            with suppress(OSError):
                os.kill(kid, signal.SIGKILL)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@contextmanager
def running(server_factory: Callable[[], Server]) -> Iterator[Server]:
    server = server_factory()
    try:
        yield server
    finally:
        server.stop()


def bare_sink(tls_dir: Path, out_dir: Path, log: Path) -> Server:
    argv = [sys.executable, "-m", "benchmarks.baresink", "--tls-dir", str(tls_dir)]
    return Server([*argv, "--out-dir", str(out_dir)], log, r"PORT (\d+)")


def mailflow_serve(
    config: Config, log: Path, command: str = "serve", notes: list[str] | None = None
) -> Server:
    """`mailflow serve` (or smtpd). A failed start is retried once, and noted in `notes`: the
    benchmark still measures, and the failure is reported rather than hidden."""
    argv = [sys.executable, "-m", "mailflow", "--config", str(config.base_dir / "config.toml")]
    try:
        return Server([*argv, command], log, r"SMTP submission: ([\d.]+):(\d+)")
    except RuntimeError:
        if notes is None:
            raise
        errors = [ln for ln in log.read_text(errors="replace").splitlines() if "Error" in ln]
        notes.append(
            f"START FAILED: `mailflow {command}` did not start (retried once): "
            + (errors[0][:200] if errors else "see its log")
        )
    return Server(
        [*argv, command], log.with_suffix(".retry.log"), r"SMTP submission: ([\d.]+):(\d+)"
    )


# --------------------------------------------------------------------------- mailflow setup


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def make_config(base: Path, db_url: str, relay_port: int) -> Config:
    """A real config.toml (as tests/conftest.py writes one), read by the server subprocess."""
    values: dict[str, dict[str, object]] = {
        "database": {"url": db_url},
        "storage": {"path": str(base / "var")},
        "templates": {"path": str(ROOT / "templates")},
        "schedules": {"path": str(ROOT / "schedules")},
        # port 0: an ephemeral port, announced on stdout. The per-sender rate limit (30/min)
        # would refuse a benchmark's burst from one account; it costs nothing to check.
        "smtp": {"port": 0, "rate_per_minute": 100_000},
        "web": {"port": 0},  # serve runs the admin web too: any free port
        "outbound": {
            "relay_host": "127.0.0.1",
            "relay_port": relay_port,
            "relay_starttls": False,  # the bare sink speaks plain SMTP
            "maildir_path": str(base / "var" / "outgoing"),
            "poll_seconds": 0.2,
        },
        "intake": {"poll_seconds": 0.2},
        "logging": {"level": "INFO"},
    }
    lines = []
    for section, entries in values.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in entries.items()]
        lines.append("")
    base.mkdir(parents=True, exist_ok=True)
    path = base / "config.toml"
    path.write_text("\n".join(lines))
    return load_config(path, environ={})


def prepare(config: Config) -> None:
    initialise(config)
    app = App.open(config)
    try:
        with transaction(app.sessions) as session:
            accounts.add(
                session,
                email=PROVIDER,
                name="Dr Bench Mark",
                role="provider",
                password=PASSWORD,
                approved=True,
                license_state="NY",
            )
    finally:
        app.close()


@contextmanager
def postgres_schema() -> Iterator[str]:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    plain = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


class AckWatcher(threading.Thread):
    """Polls outbound_messages every 5 ms; notes when each cause's first row is first seen.
    Every 100 ms it also looks for inbound messages that failed (an error, quarantine), so a
    broken service is reported at once instead of waited for."""

    GIVEN_UP = (MessageStatus.QUARANTINED, MessageStatus.DUPLICATE, MessageStatus.DISCARDED)

    def __init__(self, engine: Engine) -> None:
        super().__init__(daemon=True)
        self.engine = engine
        self.seen: dict[int, float] = {}
        self.kinds: dict[int, str] = {}
        self.failed: dict[int, str] = {}  # inbound id -> status and last error
        self._halt = threading.Event()
        self._cond = threading.Condition()

    def run(self) -> None:
        last_id = 0
        acks = select(
            OutboundMessage.id, OutboundMessage.cause_message_id, OutboundMessage.kind
        ).order_by(OutboundMessage.id)
        failures = select(
            InboundMessage.id, InboundMessage.status, InboundMessage.last_error
        ).where((InboundMessage.last_error != "") | InboundMessage.status.in_(self.GIVEN_UP))
        polls = 0
        with self.engine.connect() as conn:
            while not self._halt.is_set():
                rows = conn.execute(acks.where(OutboundMessage.id > last_id)).all()
                bad = conn.execute(failures).all() if polls % 20 == 0 else []
                conn.rollback()  # a fresh snapshot on the next poll
                polls += 1
                now = time.perf_counter()
                if rows or bad:
                    with self._cond:
                        for row_id, cause, kind in rows:
                            last_id = max(last_id, row_id)
                            if cause is not None and cause not in self.seen:
                                self.seen[cause] = now
                                self.kinds[cause] = kind
                        for ref, status, error in bad:
                            self.failed.setdefault(ref, f"{status}: {error[:200]}")
                        self._cond.notify_all()
                time.sleep(0.005)

    def wait(self, refs: Sequence[int], timeout: float) -> bool:
        """Until every message has its ack (True), or failed, or the time is up (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not all(r in self.seen or r in self.failed for r in refs):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return all(r in self.seen for r in refs)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def wait_sent(engine: Engine, ref: int, timeout: float, watcher: AckWatcher) -> bool:
    """Until the acknowledgement caused by message `ref` has been delivered to the relay."""
    deadline = time.monotonic() + timeout
    query = select(func.count()).where(
        (OutboundMessage.cause_message_id == ref) & (OutboundMessage.status == "sent")
    )
    while time.monotonic() < deadline and ref not in watcher.failed:
        with engine.connect() as conn:
            if conn.execute(query).scalar_one():
                return True
        time.sleep(0.02)
    return False


# --------------------------------------------------------------------------- figures


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile, linear between closest ranks (as numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass
class Pass:
    name: str
    sent: list[Sent]
    ack_ms: list[float] = field(default_factory=list)
    ack_missing: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    probe_ms: list[float] = field(default_factory=list)  # NOOP round trips while sending
    probe_after_ms: list[float] = field(default_factory=list)  # ... after, until the last ack
    failures: list[str] = field(default_factory=list)  # messages the service failed to process

    @property
    def data_ms(self) -> list[float]:
        return [s.data_ms for s in self.sent if s.code == 250]

    @property
    def refused(self) -> list[Sent]:
        return [s for s in self.sent if s.code != 250]

    @property
    def rate(self) -> float:
        """Messages accepted per second over the pass (first DATA to last 250)."""
        ok = [s for s in self.sent if s.code == 250]
        if len(ok) < 2:
            return float("nan")
        span = max(s.t_reply for s in ok) - min(s.t_data for s in ok)
        return len(ok) / span


@dataclass
class Memory:
    size: int
    server_peak: float
    server_idle: float
    children: list[tuple[str, float]] = field(default_factory=list)  # (what, peak MB)
    ok: bool = True


@dataclass
class Result:
    label: str
    error: str = ""  # the service could not be measured
    passes: dict[str, Pass] = field(default_factory=dict)
    memory: Memory | None = None
    notes: list[str] = field(default_factory=list)


def ack_times(p: Pass, watcher: AckWatcher, timeout: float) -> None:
    refs = [s.ref for s in p.sent if s.ref is not None]
    watcher.wait(refs, timeout)
    for s in p.sent:
        if s.ref is None:
            continue
        if s.ref in watcher.seen:
            p.ack_ms.append((watcher.seen[s.ref] - s.t_data) * 1000)
            kind = watcher.kinds[s.ref]
            p.kinds[kind] = p.kinds.get(kind, 0) + 1
        else:
            p.ack_missing += 1
            if s.ref in watcher.failed:
                p.failures.append(f"message {s.ref} {watcher.failed[s.ref]}")


def worker_breakdown(engine: Engine, refs: Sequence[int]) -> str:
    """Per-message worker time from the rows' own timestamps (back-to-back messages queue up,
    so a message's service time is processed_at - max(received_at, previous processed_at))."""
    if not refs:
        return ""
    with engine.connect() as conn:
        rows = conn.execute(
            select(InboundMessage.id, InboundMessage.received_at, InboundMessage.processed_at)
            .where(InboundMessage.id.in_(refs))
            .order_by(InboundMessage.id)
        ).all()
        acks = conn.execute(
            select(OutboundMessage.created_at, OutboundMessage.sent_at).where(
                OutboundMessage.cause_message_id.in_(refs)
            )
        ).all()
    service = []
    prev = None
    for _id, received, processed in rows:
        if processed is None:
            continue
        start = received if prev is None or received > prev else prev
        service.append((processed - start).total_seconds() * 1000)
        prev = processed
    delivery = [(s - c).total_seconds() * 1000 for c, s in acks if s is not None and c is not None]
    return (
        f"worker time per case (from row timestamps) p50 {pct(service, 50):.0f} ms, "
        f"p95 {pct(service, 95):.0f} ms; ack queued->delivered to relay p50 "
        f"{pct(delivery, 50):.0f} ms"
    )


# --------------------------------------------------------------------------- runs

WATCH: machine.CpuWatch | None = None  # set by run(): CPU taken by other processes


@contextmanager
def phase(result: Result, name: str) -> Iterator[None]:
    """Note the pass in the result when other processes took CPU while it ran."""
    progress(f"{result.label}: {name}")
    started, before = time.monotonic(), WATCH.other_seconds() if WATCH else 0.0
    yield
    if WATCH is not None:
        share = (WATCH.other_seconds() - before) / max(time.monotonic() - started, 1e-9)
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
            with phase(result, f"{len(big) / 1e6:.0f} MB message for peak RSS"):
                idle = vm(server.pid, "VmRSS")
                sent = send(server.port, messages.make(big))
                ok = sent.ref is not None and wait_sent(engine, sent.ref, 120, watcher)
                result.memory = server_memory(server.pid, len(big), idle, ok)
                if not ok:
                    why = watcher.failed.get(sent.ref or 0, "no ack delivered in 120 s")
                    result.notes.append(f"FAILED: 25 MB message: {sent.code} {sent.reply}; {why}")

            with phase(result, f"{plan.sequential} messages one after another"):
                seq = Pass("sequential", send_sequential(server.port, plan.sequential, make))
                ack_times(seq, watcher, 180)
                result.passes["seq"] = seq
                refs = [s.ref for s in seq.sent if s.ref is not None]
                result.notes.append("sequential: " + worker_breakdown(engine, refs))

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

            if plan.paced:

                def after(sent: Sent) -> None:
                    if sent.ref is not None:
                        watcher.wait([sent.ref], 60)

                with phase(result, f"{plan.paced} messages, each after the previous ack"):
                    paced = Pass("paced", send_sequential(server.port, plan.paced, make, after))
                    ack_times(paced, watcher, 60)
                    result.passes["paced"] = paced
                    refs = [s.ref for s in paced.sent if s.ref is not None]
                    result.notes.append("paced: " + worker_breakdown(engine, refs))
        result.notes += [f"on stop: {x}" for x in server.left_behind]

        # The SMTP door alone (`mailflow smtpd`, no worker): what the door itself costs under
        # two clients, apart from the CPU the worker takes. Its messages are never processed.
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
    finally:
        watcher.stop()
        engine.dispose()
    return result


# --------------------------------------------------------------------------- report


def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


def _row(
    name: str, mine: str, base: str = "-", ratio: str = "-", target: str = "", v: str = ""
) -> None:
    print(f"{name:<42}{mine:>10}{base:>11}{ratio:>8}  {target:<12}{v}")


def _ms(value: float) -> str:
    return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms"


def print_results(bare: Result, results: Sequence[Result], plan: Plan) -> None:
    print()
    print(
        "how to read: DATA->250 = smtp.data(raw) alone, client side. ack queued = first poll "
        "(every 5 ms)\nseeing the outbound_messages row caused by that message. sequential = "
        "back to back; paced = each\nmessage after the previous one's ack (an idle service). "
        "door alone = `mailflow smtpd`, no worker.\nNOOP round trip = an idle authenticated "
        "connection pinging every 20 ms: how long the server's\nevent loop leaves a client "
        "unanswered. msgs/s counts each message's connect + STARTTLS + AUTH too."
    )
    for note in bare.notes:
        print("bare sink: " + note)
    clients = f"{plan.clients} clients"
    for res in results:
        print()
        print(f"== mailflow on {res.label} ==")
        if res.error:
            print("COULD NOT RUN (every target MISSED): " + res.error[:1500])
            continue
        _row("figure", "mailflow", "bare sink", "ratio", "target", "verdict")
        print("-" * 96)
        data_rows = [("seq", "sequential", True), ("conc", clients, True)]
        data_rows += [("door", f"{clients}, door alone", False)] if "door" in res.passes else []
        for key, title, judged in data_rows:
            mine, base = res.passes[key], bare.passes["seq" if key == "seq" else "conc"]
            for q in (50, 95):
                m, b = pct(mine.data_ms, q), pct(base.data_ms, q)
                ok = m / b <= DATA_RATIO_TARGET
                _row(
                    f"DATA->250 p{q}, {title} (n={len(mine.data_ms)})",
                    _ms(m),
                    _ms(b),
                    f"{m / b:.2f}x",
                    f"<= {DATA_RATIO_TARGET}x" if judged else "(diagnosis)",
                    verdict(ok) if judged else "",
                )
        for key, title in (("seq", "sequential"), ("conc", clients), ("paced", "paced")):
            if key not in res.passes:
                continue
            p = res.passes[key]
            for q in (50, 95):
                v = pct(p.ack_ms, q)
                ok = v < ACK_P95_TARGET_MS and not p.ack_missing
                _row(
                    f"DATA->ack queued p{q}, {title}",
                    _ms(v),
                    target=f"< {ACK_P95_TARGET_MS:.0f} ms" if q == 95 else "",
                    v=verdict(ok) if q == 95 else "",
                )
        base = bare.passes["conc"]
        probes = [("conc", f"while {clients} send", "probe_ms")]
        probes += [("door", "same, door alone", "probe_ms")] if "door" in res.passes else []
        for key, title, attr in probes:
            for q, name in ((50, "p50"), (99, "p99"), (100, "max")):
                m, b = pct(getattr(res.passes[key], attr), q), pct(base.probe_ms, q)
                _row(f"NOOP round trip {name}, {title}", _ms(m), _ms(b), f"{m / b:.2f}x")
        after = res.passes["conc"].probe_after_ms
        if after:
            for q, name in ((99, "p99"), (100, "max")):
                _row(f"NOOP round trip {name}, worker busy alone", _ms(pct(after, q)))
        for key, title in (("seq", "sequential"), ("conc", clients)):
            m, b = res.passes[key].rate, bare.passes[key].rate
            _row(f"msgs/s accepted, {title}", f"{m:.2f}", f"{b:.2f}", f"{m / b:.2f}x")
        if res.memory and bare.memory:
            m, b = res.memory, bare.memory
            _row(
                f"peak RSS, {m.size / 1e6:.1f} MB message (server)",
                f"{m.server_peak:.0f} MB",
                f"{b.server_peak:.0f} MB",
                f"{m.server_peak / b.server_peak:.2f}x",
                f"< {RSS_TARGET_MB:.0f} MB",
                verdict(m.server_peak < RSS_TARGET_MB and m.ok),
            )
            _row("  RSS before the message", f"{m.server_idle:.0f} MB", f"{b.server_idle:.0f} MB")
            workers = [mb for role, mb in m.children if role == "pool worker"]
            if workers:
                _row("  its pool workers (each, peak)", ", ".join(f"{w:.0f}" for w in workers))
                total = m.server_peak + sum(mb for _role, mb in m.children)
                _row("  sum of all its processes' peaks", f"{total:.0f} MB")
        problems = []
        for p in res.passes.values():
            if p.refused:
                problems.append(f"{p.name}: {len(p.refused)} refused ({p.refused[0].reply})")
            if p.ack_missing:
                problems.append(f"MISSING: {p.name}: {p.ack_missing} without an acknowledgement")
            if p.failures:
                problems.append(f"FAILED: {len(p.failures)} in {p.name}, e.g. {p.failures[0]}")
        kinds: dict[str, int] = {}
        for p in res.passes.values():
            for k, n in p.kinds.items():
                kinds[k] = kinds.get(k, 0) + n
        print("  outbound kinds: " + ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())))
        for note in [*res.notes, *problems]:
            print("  " + note)


def environment(pg_version: str) -> str:
    dbs = f"SQLite {sqlite3.sqlite_version} (WAL, synchronous=NORMAL)"
    if pg_version:
        dbs += f"; PostgreSQL {pg_version} (local)"
    return machine.describe(
        f"aiosmtpd {version('aiosmtpd')}, SQLAlchemy {version('SQLAlchemy')}, "
        f"Pillow {version('Pillow')}; mailflow at {machine.git_state(ROOT)}\n"
        f"             databases: {dbs}"
    )


def postgres_version() -> str:
    if not PG_URL:
        return ""
    engine = create_engine(PG_URL)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar_one()).split()[0]
    finally:
        engine.dispose()


_STARTED = time.monotonic()


def progress(what: str) -> None:
    print(f"[{time.monotonic() - _STARTED:5.1f} s] {what}", flush=True)


def run(quick: bool = False) -> None:
    global _STARTED, WATCH
    plan = QUICK if quick else FULL
    started = _STARTED = time.monotonic()
    progress(f"intake benchmark{' (quick)' if quick else ''}: generating photos")
    photos = [textured_photo(seed) for seed in range(1, 7)]
    case_photos = list(zip(CASE_PHOTOS, photos[:3], strict=True))
    template = message_template(case_photos)
    big = message_template(case_photos + list(zip(EXTRA_PHOTOS, photos[3:], strict=True)))
    messages = Messages()
    pg_version = postgres_version()
    print(environment(pg_version))
    print(
        f"case email: filled form + 3 JPEG photos {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} "
        f"({', '.join(f'{len(p) / 1e6:.2f}' for p in photos[:3])} MB) = "
        f"{len(template) / 1e6:.1f} MB on the wire; big message: 6 photos, {len(big) / 1e6:.1f} MB"
    )
    print(
        "client: smtplib in this process, a new connection per message (EHLO, STARTTLS, AUTH, "
        "MAIL, RCPT untimed), then smtp.data(raw) timed; servers in their own processes",
        flush=True,
    )
    if len(big) < BIG_TARGET:
        print(f"note: the big message is {len(big) / 1e6:.1f} MB, under {BIG_TARGET / 1e6:.0f} MB")

    relay = RelaySink()
    relay.start()
    watch = WATCH = machine.CpuWatch()
    watch.start()
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="mailflow-bench-") as tmp_name:
            tmp = Path(tmp_name)
            tls_dir = tmp / "bare-tls"
            create_self_signed(tls_dir, "bare.localhost")
            bare = measure_bare(tmp, tls_dir, plan, messages, template, big)
            databases: list[tuple[str, Callable[[], contextlib.AbstractContextManager[str]]]]
            databases = [
                (
                    f"SQLite {sqlite3.sqlite_version}",
                    lambda: contextlib.nullcontext(f"sqlite:///{tmp}/mailflow.db"),
                )
            ]
            if PG_URL:
                databases.append((f"PostgreSQL {pg_version}", postgres_schema))
            for label, database in databases:
                try:
                    with database() as url:
                        results.append(
                            measure_mailflow(label, url, tmp, plan, relay, messages, template, big)
                        )
                except Exception as exc:  # the other database is still measured
                    traceback.print_exc()
                    results.append(Result(label, error=f"{type(exc).__name__}: {exc}"))
    finally:
        relay.stop()
        watch.stop()
    print_results(bare, results, plan)
    print()
    print(f"relay sink received {len(relay.messages)} acknowledgements")
    print(watch.report())
    print(f"intake benchmark took {time.monotonic() - started:.0f} s")
