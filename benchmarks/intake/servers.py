"""The servers measured, each in its own process (bare sink, `mailflow serve`, `mailflow
smtpd`), their /proc figures, and a mailflow instance to run them on (config, database)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from sqlalchemy import create_engine, text

from benchmarks.intake.plan import PASSWORD, PG_URL, PROVIDER, ROOT
from mailflow.app import App, initialise
from mailflow.config import Config, load_config
from mailflow.db.session import transaction
from mailflow.workflow import accounts


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
                last = found.groups()[-1] if found.groups() else ""
                return int(last) if last and last.isdigit() else 0  # 0: a process with no port
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


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def make_config(base: Path, db_url: str, relay_port: int,
                extra: dict[str, dict[str, object]] | None = None) -> Config:
    """A real config.toml (as tests/conftest.py writes one), read by the server subprocess;
    `extra`: sections' keys to set besides (or instead of) these."""
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
    for section, entries in (extra or {}).items():
        values.setdefault(section, {}).update(entries)
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


def postgres_version() -> str:
    if not PG_URL:
        return ""
    engine = create_engine(PG_URL)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar_one()).split()[0]
    finally:
        engine.dispose()
