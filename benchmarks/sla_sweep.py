"""The SLA sweep over 100,000 open cases: finding the due ones (target: under 200 ms).

Baseline in the same run: the same query shape over the same table with no index to use
(a full scan), so the ratio shows what the index on cases.sla_next_due_at buys.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, text

from mailflow.app import App, initialise
from mailflow.config import load_config
from mailflow.db.models import Account, Case
from mailflow.workflow.enforcer import due_cases

OPEN_CASES = 100_000
DUE = 250
TARGET_MS = 200.0


def _config(folder: Path, url: str) -> App:
    (folder / "config.toml").write_text(
        f'[database]\nurl = "{url}"\n[storage]\npath = "{folder / "var"}"\n'
        f'[schedules]\npath = "{Path(__file__).resolve().parents[1] / "schedules"}"\n'
        f'[templates]\npath = "{Path(__file__).resolve().parents[1] / "templates"}"\n'
    )
    config = load_config(folder / "config.toml", environ={})
    initialise(config)
    return App.open(config)


def _fill(app: App, n: int, now: datetime) -> None:
    with app.engine.begin() as conn:
        conn.execute(insert(Account).values(email="p@b.test", name="P", role="provider",
                                            status="approved", created_at=now))
        rows = []
        for i in range(n):
            due = now - timedelta(minutes=1) if i < DUE else now + timedelta(minutes=5 + i % 5000)
            rows.append({
                "number": f"DERM-2026-{i + 1:06d}", "provider_id": 1, "state": "assigned",
                "urgency": "routine", "form": {}, "form_labels": {}, "form_problems": [],
                "missing": [], "subject": "", "created_at": now, "updated_at": now,
                "sla_next_due_at": due, "sla_next_kind": "warning-75", "sla_consumed_minutes": 0,
                "sla_calendar_version": "", })
            if len(rows) == 10_000:
                conn.execute(insert(Case.__table__), rows)
                rows = []
        if rows:
            conn.execute(insert(Case.__table__), rows)


def _time(fn, repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        out.append((time.perf_counter() - began) * 1000)
    return out


def _one(name: str, url: str, folder: Path, quick: bool) -> None:
    app = _config(folder, url)
    try:
        now = datetime.now(UTC)
        n = 10_000 if quick else OPEN_CASES
        began = time.perf_counter()
        _fill(app, n, now)
        print(f"  {name}: {n:,} open cases inserted in {time.perf_counter() - began:.1f} s")
        found = due_cases(app, now)
        assert len(found) == min(DUE, n), len(found)
        sweep = _time(lambda: due_cases(app, now), 20)
        with app.engine.connect() as conn:
            scan = _time(lambda: conn.execute(text(
                "select id from cases where sla_next_due_at + 0 <= :now"
                if name == "sqlite" else
                "select id from cases where sla_next_due_at + interval '0' <= :now"),
                {"now": now.replace(tzinfo=None) if name == "sqlite" else now}).all(), 5)
        p50, p95 = statistics.median(sweep), sorted(sweep)[int(len(sweep) * 0.95) - 1]
        verdict = "OK" if p95 < TARGET_MS else "MISSED"
        print(f"  {name}: sweep finds {len(found)} due of {n:,}: p50 {p50:.1f} ms, p95 {p95:.1f} ms"
              f"  (target p95 < {TARGET_MS:.0f} ms) {verdict}")
        print(f"  {name}: baseline full scan p50 {statistics.median(scan):.1f} ms; "
              f"ratio {p50 / statistics.median(scan):.3f}x")
    finally:
        app.close()


def run(quick: bool = False) -> None:
    print("SLA sweep: find the due cases among the open ones")
    with tempfile.TemporaryDirectory() as tmp:
        _one("sqlite", f"sqlite:///{tmp}/bench.db", Path(tmp), quick)
    pg = os.environ.get("MAILFLOW_TEST_POSTGRES_URL")
    if pg:
        import psycopg

        schema = f"bench_{uuid.uuid4().hex[:12]}"
        plain = pg.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            sep = "&" if "?" in pg else "?"
            with tempfile.TemporaryDirectory() as tmp:
                _one("postgresql", f"{pg}{sep}options=-csearch_path%3D{schema}", Path(tmp), quick)
        finally:
            with psycopg.connect(plain, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    run()
