"""What a benchmark needs to know about the machine: what it is, and whether it was quiet.

On a 2-core machine another process's work (a test run, a build) moves every figure, so
CpuWatch samples /proc while the benchmark runs and says how much CPU went elsewhere.
"""

from __future__ import annotations

import os
import platform
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: str) -> tuple[int, str, int] | None:
    """(parent pid, command name, CPU ticks) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), comm, int(fields[11]) + int(fields[12])


class CpuWatch(threading.Thread):
    """CPU time of the processes outside this process's tree (PostgreSQL counted apart)."""

    def __init__(self, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.other: Counter[str] = Counter()  # command line (shortened) -> ticks
        self._names: dict[str, str] = {}
        self.postgres = 0
        self.other_ticks = 0  # running total of self.other
        self._last: dict[str, int] = {}
        self._halt = threading.Event()
        self._started_at = 0.0
        self.seconds = 0.0
        self.failed = ""

    def _sample(self) -> None:
        procs = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (st := _stat(entry)) is not None:
                procs[entry] = st
        mine = {str(os.getpid())}
        grew = True
        while grew:  # the descendants of this process
            before = len(mine)
            mine |= {pid for pid, (ppid, _c, _t) in procs.items() if str(ppid) in mine}
            grew = len(mine) > before
        for pid, (_ppid, comm, ticks) in procs.items():
            used = ticks - self._last.get(pid, ticks if not self._last else 0)
            if pid in mine or used <= 0:
                continue
            if comm.startswith("postgres"):
                self.postgres += used
            else:
                self.other[self._label(pid, comm)] += used
                self.other_ticks += used
        self._last = {pid: t for pid, (_p, _c, t) in procs.items()}

    def _label(self, pid: str, comm: str) -> str:
        if pid not in self._names:
            try:
                line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, UnicodeDecodeError):
                line = ""
            self._names[pid] = (line.strip() or comm)[:50]
        return self._names[pid]

    def run(self) -> None:
        self._started_at = time.monotonic()
        try:
            self._sample()
            while not self._halt.wait(self.interval):
                self._sample()
        except Exception as exc:  # a benchmark goes on without its watch
            self.failed = f"{type(exc).__name__}: {exc}"
        self.seconds = time.monotonic() - self._started_at

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def other_seconds(self) -> float:
        return self.other_ticks / TICK

    def report(self) -> str:
        if self.failed:
            return f"(could not watch the other processes: {self.failed})"
        other = sum(self.other.values()) / TICK
        share = other / max(self.seconds, 1e-9)
        top = "; ".join(f"{name} {ticks / TICK:.1f} s" for name, ticks in self.other.most_common(3))
        line = (
            f"other processes used {other:.1f} CPU-s over {self.seconds:.0f} s "
            f"({share:.0%} of one core){f': {top}' if top else ''}; "
            f"PostgreSQL server {self.postgres / TICK:.1f} CPU-s"
        )
        if share > 0.10:
            line += (
                "\nWARNING: the machine was not quiet during this run; the figures above are "
                "disturbed by other work. Run again on an idle machine."
            )
        return line


def git_state(root: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def describe(extra: str = "") -> str:
    load = os.getloadavg()
    return (
        f"environment: {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, load average {load[0]:.2f} at start"
        + (f"\n             {extra}" if extra else "")
    )
