"""The blob store in PostgreSQL beside a bare psycopg insert and select of the same bytes.

`python -m benchmarks blob_store`: put and get of a 3 MB photo through mailflow's database blob
store (named by HMAC, sealed with AES-GCM, written in 1 MiB chunk rows and a blobs row, one
transaction) against the bare minimum for the same bytes: one psycopg INSERT of a bytea row,
committed, and one SELECT of it. Both in this process, on the same PostgreSQL, in one schema of
their own, interleaved so the machine's load falls on both alike. Target (issue #13): each at
most 1.3x the bare figure. Skipped without MAILFLOW_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import machine
from benchmarks.figures import pct, verdict
from benchmarks.intake.mail import textured_photo
from benchmarks.intake.plan import PG_URL, ROOT
from benchmarks.intake.servers import make_config, postgres_schema
from mailflow.app import App, initialise

RATIO_TARGET = 1.3


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def run(quick: bool = False) -> None:
    if not PG_URL:
        print("blob_store: MAILFLOW_TEST_POSTGRES_URL is not set; nothing to measure")
        return
    import psycopg

    rounds = 5 if quick else 30
    print(machine.describe(f"mailflow at {machine.git_state(ROOT)}"))
    photo = textured_photo(1)
    print(f"a {len(photo) / 1e6:.2f} MB JPEG, {rounds} rounds; each put is of new bytes "
          "(16 bytes changed), so neither side finds it stored already")
    watch = machine.CpuWatch()
    watch.start()
    figures: dict[str, list[tuple[float, float]]] = {k: [] for k in ("put", "get", "bput", "bget")}
    with tempfile.TemporaryDirectory(prefix="mailflow-blobs-") as tmp, postgres_schema() as url:
        config = make_config(Path(tmp), url, 1, {"storage": {"blobs": "database"}})
        initialise(config)
        app = App.open(config)
        plain = url.replace("postgresql+psycopg://", "postgresql://")
        try:
            with psycopg.connect(plain) as conn:
                conn.execute("CREATE TABLE bare_blobs (id serial PRIMARY KEY, data bytea)")
                conn.commit()
                for i in range(rounds + 1):
                    data = os.urandom(16) + photo[16:]
                    put = _timed(lambda d=data: app.blobs.put(d))
                    digest = app.blobs.put(data)  # already there: only its name, for the get
                    get = _timed(lambda g=digest: app.blobs.get(g))

                    def bare_put(d: bytes = data) -> int:
                        row = conn.execute(
                            "INSERT INTO bare_blobs (data) VALUES (%s) RETURNING id", (d,)
                        ).fetchone()
                        conn.commit()
                        return int(row[0]) if row else 0

                    ids: list[int] = []
                    bput = _timed(lambda ids=ids: ids.append(bare_put()))
                    bget = _timed(lambda: conn.execute(
                        "SELECT data FROM bare_blobs WHERE id = %s", (ids[0],)).fetchone())  # noqa: B023
                    conn.commit()
                    if i:  # the first round warms caches and connections
                        for key, value in zip(figures, (put, get, bput, bget), strict=True):
                            figures[key].append(value)
        finally:
            app.close()
    watch.stop()
    print(f"{'figure':<40}{'mailflow':>10}{'bare':>10}{'ratio':>8}  target")
    for op, bare in (("put", "bput"), ("get", "bget")):
        for i, what in ((0, "wall p50"), (1, "CPU mean")):
            mine = [f[i] for f in figures[op]]
            base = [f[i] for f in figures[bare]]
            m, b = (pct(mine, 50), pct(base, 50)) if i == 0 else (
                sum(mine) / len(mine), sum(base) / len(base))
            note = (f"<= {RATIO_TARGET}x {verdict(m / b <= RATIO_TARGET)}" if i == 0
                    else "(diagnosis: sealing and naming are mailflow's alone)")
            print(f"{op + ' ' + what + ' (ms)':<40}{m * 1000:>10.1f}{b * 1000:>10.1f}"
                  f"{m / b:>7.2f}x  {note}")
    print(watch.report())
