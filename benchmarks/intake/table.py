"""The intake benchmark's printout: each figure beside the bare sink's, with its target."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from importlib.metadata import version

from benchmarks import machine
from benchmarks.figures import pct, verdict
from benchmarks.intake.plan import ACK_P95_TARGET_MS, DATA_RATIO_TARGET, ROOT, RSS_TARGET_MB, Plan
from benchmarks.intake.watch import Memory, Result


def _row(
    name: str, mine: str, base: str = "-", ratio: str = "-", target: str = "", v: str = ""
) -> None:
    print(f"{name:<42}{mine:>10}{base:>11}{ratio:>8}  {target:<12}{v}")


def _ms(value: float) -> str:
    return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms"


HOW_TO_READ = (
    "how to read: DATA->250 = smtp.data(raw) alone, client side. ack queued = first poll "
    "(every 5 ms)\nseeing the outbound_messages row caused by that message. sequential = "
    "back to back; paced = each\nmessage after the previous one's ack (an idle service). "
    "door alone = `mailflow smtpd`, no worker.\nNOOP round trip = an idle authenticated "
    "connection pinging every 20 ms: how long the server's\nevent loop leaves a client "
    "unanswered. msgs/s counts each message's connect + STARTTLS + AUTH too."
)


def print_results(bare: Result, results: Sequence[Result], plan: Plan) -> None:
    print()
    print(HOW_TO_READ)
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
        _data_rows(res, bare, clients)
        _ack_rows(res, clients)
        _probe_rows(res, bare, clients)
        for key, title in (("seq", "sequential"), ("conc", clients)):
            m, b = res.passes[key].rate, bare.passes[key].rate
            _row(f"msgs/s accepted, {title}", f"{m:.2f}", f"{b:.2f}", f"{m / b:.2f}x")
        if res.memory and bare.memory:
            _memory_rows(res.memory, bare.memory)
        _problems(res)


def _data_rows(res: Result, bare: Result, clients: str) -> None:
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


def _ack_rows(res: Result, clients: str) -> None:
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


def _probe_rows(res: Result, bare: Result, clients: str) -> None:
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


def _memory_rows(m: Memory, b: Memory) -> None:
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


def _problems(res: Result) -> None:
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
