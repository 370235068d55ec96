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

The pieces: `plan` (what is sent, the targets), `mail` (the client), `servers` (the processes
measured), `watch` (the database poller and the figures), `measure` (the runs), `table` (the
printout).
"""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from benchmarks import machine
from benchmarks.intake.mail import Messages, message_template, textured_photo
from benchmarks.intake.measure import PROGRESS, measure_bare, measure_mailflow
from benchmarks.intake.plan import (
    BIG_TARGET,
    CASE_PHOTOS,
    EXTRA_PHOTOS,
    FULL,
    PG_URL,
    PHOTO_SIZE,
    QUICK,
    Plan,
)
from benchmarks.intake.servers import postgres_schema, postgres_version
from benchmarks.intake.table import environment, print_results
from benchmarks.intake.watch import Result
from mailflow.store.tls import create_self_signed
from tests.support.sink import RelaySink

Database = tuple[str, Callable[[], contextlib.AbstractContextManager[str]]]


def run(quick: bool = False) -> None:
    plan = QUICK if quick else FULL
    watch = machine.CpuWatch()
    started = PROGRESS.begin(watch)
    PROGRESS.say(f"intake benchmark{' (quick)' if quick else ''}: generating photos")
    photos = [textured_photo(seed) for seed in range(1, 7)]
    case_photos = list(zip(CASE_PHOTOS, photos[:3], strict=True))
    template = message_template(case_photos)
    big = message_template(case_photos + list(zip(EXTRA_PHOTOS, photos[3:], strict=True)))
    pg_version = postgres_version()
    print(environment(pg_version))
    _describe(photos, template, big)
    relay = RelaySink()
    relay.start()
    watch.start()
    try:
        bare, results = _measure_all(plan, Messages(), template, big, relay, pg_version)
    finally:
        relay.stop()
        watch.stop()
    print_results(bare, results, plan)
    print()
    print(f"relay sink received {len(relay.messages)} acknowledgements")
    print(watch.report())
    print(f"intake benchmark took {time.monotonic() - started:.0f} s")


def _describe(photos: list[bytes], template: bytes, big: bytes) -> None:
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


def _measure_all(plan: Plan, messages: Messages, template: bytes, big: bytes,
                 relay: RelaySink, pg_version: str) -> tuple[Result, list[Result]]:
    """The bare sink, then mailflow on each database (one that fails is reported, not fatal)."""
    results = []
    with tempfile.TemporaryDirectory(prefix="mailflow-bench-") as tmp_name:
        tmp = Path(tmp_name)
        tls_dir = tmp / "bare-tls"
        create_self_signed(tls_dir, "bare.localhost")
        bare = measure_bare(tmp, tls_dir, plan, messages, template, big)
        databases: list[Database] = [
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
    return bare, results
