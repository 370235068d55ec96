"""Where a case's CPU goes: N complete cases through the real code, in this process, by stage.

`python -m benchmarks profile [--quick]`; MAILFLOW_BENCH_PROFILE_DUMP=FOLDER keeps each thread
role's pstats there (`python -m pstats FILE`) to look at function by function.

Each case is the intake benchmark's case email (a filled form and three ~3 MB 12 MP JPEGs) sent
with smtplib to the real SMTP door (aiosmtpd, STARTTLS, AUTH) running on a thread of this
process; then the worker analyses and routes it in this process (no pool: the photos are decoded
on the analysis's own threads), and the outbox delivers the acknowledgement to a relay sink.

Two runs of the same cases:
1. unprofiled: the CPU of the service's threads (time.thread_time of every thread the service
   starts; the client and the relay sink run on threads started before and are not counted),
   per case. This is the figure judged: at most 0.3 s to the acknowledgement queued (issue #13),
   and, so that the target travels between machines, as a ratio to Pillow's bare draft decode
   of the same three photos in the same run (the issue's 0.3 s was 6.7x that on its machine).
2. profiled: cProfile on each of those threads with thread_time as its clock, every function's
   own time put in a stage by its module (receive, MIME, base64, photo decode, encode, hashing,
   encryption, disk, database, workflow, delivery); a function of no stage (bytes.replace, a
   regex) counts where its callers are. The profiler's own cost falls on Python-level code
   (the stdlib's line-by-line MIME parser most), so the shares are a guide, the total of run 1
   the figure.
"""

from __future__ import annotations

import contextlib
import cProfile
import os
import pstats
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from benchmarks import machine
from benchmarks.figures import verdict
from benchmarks.intake.mail import Messages, message_template, send, textured_photo
from benchmarks.intake.plan import CASE_PHOTOS, PG_URL, ROOT
from benchmarks.intake.servers import make_config, postgres_schema, prepare
from benchmarks.profile_stages import STAGES, by_stage
from mailflow.app import App
from mailflow.config import Config
from tests.support.sink import RelaySink

CPU_TARGET_S = 0.3  # issue #13: CPU per complete case, to the acknowledgement queued
# The issue's machine draft-decoded a 12 MP JPEG at the review scale in 15 ms: its 0.3 s is
# 0.3 / (3 x 0.015) = 6.7 times the bare draft decode of a case's three photos, a target that
# travels between machines (this one's decode is measured in the same run).
ISSUE_DRAFT_S = 0.015
RATIO_TARGET = CPU_TARGET_S / (3 * ISSUE_DRAFT_S)
DELIVERY = "profile-delivery"
LOOP = "profile-door-loop"


NATIVE = "threads of no Python code (argon2, ZeroMQ)"
ROLES = ("door: event loop (receive)", "door: threads (AUTH, spool)", "worker (analysis, route)",
         "outbox (delivery)", "other threads")


def role_of(thread: threading.Thread) -> str:
    name = thread.name
    if name == LOOP:
        return ROLES[0]
    if name.startswith("door"):
        return ROLES[1]
    if name == "worker" or name.startswith("ThreadPoolExecutor"):  # the photo threads
        return ROLES[2]
    return ROLES[3] if name == DELIVERY else ROLES[4]


def thread_cpu(thread: threading.Thread) -> float:
    """A live thread's CPU seconds so far, read from another thread (Linux)."""
    assert thread.ident is not None
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


class ThreadCpu:
    """While active, every thread started records its CPU time (and, profiling, its profile),
    by its role in the service; and the whole service's CPU over the measured cases, the
    threads no Python code starts included (argon2's lanes, ZeroMQ's I/O thread)."""

    def __init__(self, profile: bool) -> None:
        self.profile = profile
        self.lock = threading.Lock()
        self.seconds: dict[str, float] = {}
        self.profiles: dict[str, list[cProfile.Profile]] = {}
        self.baseline: dict[threading.Thread, float] = {}
        self.outside: list[threading.Thread] = []  # the client and the relay sink: not ours
        self.window = (0.0, 0.0)
        self.total = 0.0  # the service's CPU seconds between reset() and stop()

    def _outside_cpu(self) -> float:
        return sum(thread_cpu(t) for t in self.outside if t.is_alive())

    def reset(self) -> None:
        """Start counting here (after the warm-up): threads alive now count from now on."""
        with self.lock:
            self.seconds, self.profiles = {}, {}
            self.baseline = {t: thread_cpu(t) for t in threading.enumerate() if t.ident}
            self.window = (time.process_time(), self._outside_cpu())

    def stop(self) -> None:
        process, outside = self.window
        self.total = (time.process_time() - process) - (self._outside_cpu() - outside)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        original = threading.Thread.run
        recorder = self
        self.outside = [t for t in threading.enumerate() if t.ident]

        def run(thread: threading.Thread) -> None:
            prof = cProfile.Profile(time.thread_time) if recorder.profile else None
            started = time.thread_time()
            if prof is not None:
                prof.enable()
            try:
                original(thread)
            finally:
                if prof is not None:
                    prof.disable()
                role = role_of(thread)
                with recorder.lock:
                    spent = time.thread_time() - max(started, recorder.baseline.get(thread, 0.0))
                    recorder.seconds[role] = recorder.seconds.get(role, 0.0) + spent
                    if prof is not None:
                        recorder.profiles.setdefault(role, []).append(prof)

        threading.Thread.run = run  # type: ignore[method-assign]
        try:
            yield
        finally:
            threading.Thread.run = original  # type: ignore[method-assign]


class Service:
    """The SMTP door on an event loop thread, and the worker and outbox called on threads."""

    def __init__(self, config: Config) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.app = App.open(config)
        self.threads = ThreadPoolExecutor(4, thread_name_prefix="door")
        self.port = 0
        self._ready = threading.Event()
        self._stop: Callable[[], None] = lambda: None
        self.loop_thread = threading.Thread(target=self._serve, name=LOOP, daemon=True)

    def _serve(self) -> None:
        import asyncio

        from mailflow.intake.smtp import IntakeHandler, start_smtp

        async def main() -> None:
            handler = IntakeHandler(self.app, self.threads)
            server = await start_smtp(self.app, handler, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            self._stop = lambda: loop.call_soon_threadsafe(stop.set)
            self._ready.set()
            await stop.wait()
            server.close()
            await server.wait_closed()

        asyncio.run(main())

    def start(self) -> None:
        self.loop_thread.start()
        self._ready.wait(30)

    def process(self) -> None:
        """The worker, then the outbox, each on a thread of its own (so it is counted)."""
        from mailflow.outbound.delivery import deliver_due
        from mailflow.workflow.worker import drain

        for name, step in (("worker", lambda: drain(self.app)),
                           (DELIVERY, lambda: deliver_due(self.app))):
            t = threading.Thread(target=step, name=name)
            t.start()
            t.join()

    def stop(self) -> None:
        self._stop()
        self.loop_thread.join(30)
        self.threads.shutdown()
        self.app.close()


def _cases(config: Config, raw: Callable[[], bytes], count: int, profile: bool) -> ThreadCpu:
    cpu = ThreadCpu(profile)
    with cpu.active():
        service = Service(config)
        service.start()
        try:
            send(service.port, raw())  # warm-up: imports, first connections, caches
            service.process()
            cpu.reset()
            for _ in range(count):
                sent = send(service.port, raw())
                if sent.code != 250:
                    raise RuntimeError(f"the door refused a case: {sent.code} {sent.reply}")
                service.process()
            cpu.stop()
        finally:
            service.stop()
    return cpu


def _database(label: str, url_cm: contextlib.AbstractContextManager[str], tmp: Path,
              raw: Callable[[], bytes], relay: RelaySink, count: int,
              photos: list[bytes]) -> None:
    with url_cm as url:
        base = tmp / label.split()[0].lower()
        config = make_config(base, url, relay.port)
        prepare(config)
        plain = _cases(config, raw, count, profile=False)
        profiled = _cases(config, raw, count, profile=True)
    print(f"\n== {label}: {count} cases ==")
    _report(plain, profiled, count, draft_decodes(photos))


def draft_decodes(photos: list[bytes], rounds: int = 5) -> float:
    """CPU seconds of Pillow alone decoding the photos at half scale (the review copy's DCT
    scale for 4000x3000), the least any case path can do with them."""
    import io

    from PIL import Image

    started = time.process_time()
    for _ in range(rounds):
        for data in photos:
            im = Image.open(io.BytesIO(data))
            im.draft(im.mode, (im.width // 2, im.height // 2))
            im.load()
    return (time.process_time() - started) / rounds


def _report(plain: ThreadCpu, profiled: ThreadCpu, count: int, baseline: float) -> None:
    """CPU by thread role (unprofiled: the figures), then by stage: each role's profiled
    stages scaled to its unprofiled CPU, so one role's profiling cost does not skew another."""
    per_case = {role: plain.seconds.get(role, 0.0) / count for role in ROLES}
    # what the service's own Python threads do not show: argon2's lanes (AUTH), ZeroMQ's I/O
    per_case[NATIVE] = max(0.0, plain.total / count - sum(per_case.values()))
    queued = sum(v for role, v in per_case.items() if role != ROLES[3])
    print(f"CPU per complete case, to the acknowledgement queued: {queued:.3f} s "
          f"(target <= {CPU_TARGET_S} s: {verdict(queued <= CPU_TARGET_S)}); without the door's "
          f"receive (event loop) {queued - per_case[ROLES[0]]:.3f} s; without AUTH's argon2 "
          f"lanes {queued - per_case[NATIVE]:.3f} s")
    ratio = queued / baseline
    print(f"beside Pillow's bare draft decode of the case's 3 photos in this run ({baseline:.3f} "
          f"s): {ratio:.1f}x (the issue's 0.3 s on its machine is {RATIO_TARGET:.1f}x: "
          f"{verdict(ratio <= RATIO_TARGET)})")
    print(f"{'thread role (unprofiled CPU)':<44}{'s/case':>8}")
    for role in (*ROLES, NATIVE):
        print(f"{role:<44}{per_case[role]:>8.3f}")
    stages: dict[str, float] = {}
    dump = os.environ.get("MAILFLOW_BENCH_PROFILE_DUMP")  # a folder: each role's pstats
    for role, profiles in profiled.profiles.items():
        if dump:
            file_name = "".join(c if c.isalnum() else "-" for c in role) + ".pstats"
            pstats.Stats(*profiles).dump_stats(Path(dump) / file_name)
        found = by_stage(pstats.Stats(*profiles))
        scale = per_case.get(role, 0.0) / (sum(found.values()) or 1.0)
        for stage, seconds in found.items():
            stages[stage] = stages.get(stage, 0.0) + seconds * scale
    total = sum(stages.values()) or 1.0
    print(f"{'stage (profiled, scaled per role)':<40}{'s/case':>8}{'share':>8}")
    for stage in [*STAGES, "other"]:
        if stages.get(stage, 0.0) >= 0.0005:
            print(f"{stage:<40}{stages[stage]:>8.3f}{stages[stage] / total:>8.0%}")


def run(quick: bool = False) -> None:
    count = 3 if quick else 10
    print(machine.describe(f"mailflow at {machine.git_state(ROOT)}"))
    photos = [textured_photo(seed) for seed in range(1, 4)]
    template = message_template(list(zip(CASE_PHOTOS, photos, strict=True)))
    messages = Messages()
    print(f"case email: form + 3 JPEG photos 4000x3000 "
          f"({', '.join(f'{len(p) / 1e6:.2f}' for p in photos)} MB), "
          f"{len(template) / 1e6:.1f} MB on the wire; acks delivered to a relay sink")
    watch = machine.CpuWatch()
    relay = RelaySink()
    relay.start()
    watch.start()
    try:
        with tempfile.TemporaryDirectory(prefix="mailflow-profile-") as tmp_name:
            tmp = Path(tmp_name)
            raw = lambda: messages.make(template)  # noqa: E731
            _database("SQLite", contextlib.nullcontext(f"sqlite:///{tmp}/mailflow.db"),
                      tmp, raw, relay, count, photos)
            if PG_URL:
                _database("PostgreSQL", postgres_schema(), tmp, raw, relay, count, photos)
    finally:
        relay.stop()
        watch.stop()
    print(watch.report())
