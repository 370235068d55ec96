"""Complete mailflow nodes as real processes on one PostgreSQL database (issue #13 items 2-3).

A node is what one machine runs: its own storage folder (var/: TLS certificate, web key, logs;
no blobs, they are in the database) and its own ports, one `mailflow serve --parts ...`
process per part, each in its own process group so a `kill -9` takes its analysis processes
with it. Every node shares the database and the master key (MAILFLOW_MASTER_KEY, as
docs/deploy.md says). One node also runs the installation's event bus on TCP, which every
process of every node publishes to and listens on; when it is down, work is found by polling.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailflow.app import App, initialise
from mailflow.config import Config
from tests.conftest import PG_URL, MigratedTemplates, _drop_pg_database, make_config
from tests.support.mail import wait_until
from tests.support.sink import RelaySink, free_port
from tests.support.web import sign_in

needs_postgres = pytest.mark.skipif(
    not PG_URL, reason="several nodes share one PostgreSQL database: set "
    "MAILFLOW_TEST_POSTGRES_URL (CI does) to run the two-node and chaos tests")

# what each process of a node runs (`mailflow serve --parts ...`)
ROLES: dict[str, str] = {
    "bus": "bus",
    "smtpd": "smtp",
    "worker": "worker,reports,outbox",
    "scheduler": "scheduler",
    "web": "web",
}
READY = "mailflow is running"
STOP_SECONDS = 30  # a part that has not exited this long after SIGTERM is killed (and named)


@contextlib.contextmanager
def postgres_database(templates: MigratedTemplates) -> Iterator[str]:
    """A database of its own at the newest schema, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = templates.postgres_copy(name)
    try:
        yield url
    finally:
        _drop_pg_database(name)


def master_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@dataclass
class Proc:
    role: str
    popen: subprocess.Popen[bytes]
    log: Path


@dataclass
class Node:
    """One machine's processes. `start(role)`, `kill(role)` (SIGKILL), `terminate(role)`."""

    name: str
    config: Config
    env: dict[str, str]
    smtp_port: int
    web_port: int
    procs: dict[str, Proc] = field(default_factory=dict)
    starts: int = 0

    @property
    def folder(self) -> Path:
        return self.config.base_dir

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def spawn(self, role: str) -> Proc:
        """Start a role's process without waiting for it."""
        assert role not in self.procs or self.procs[role].popen.poll() is not None, role
        self.starts += 1
        log = self.folder / f"{role}.{self.starts}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "mailflow", "--config", str(self.folder / "config.toml"),
                 "serve", "--parts", ROLES[role]],
                env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[role] = proc = Proc(role, popen, log)
        return proc

    def ready(self, role: str, timeout: float = 60) -> None:
        proc = self.procs[role]

        def up() -> bool:
            if proc.popen.poll() is not None:
                raise AssertionError(f"{self.name} {role} exited {proc.popen.returncode}:\n"
                                     + proc.log.read_text()[-3000:])
            return READY in proc.log.read_text()

        wait_until(up, timeout, f"{self.name} {role} to start")

    def start(self, role: str) -> None:
        self.spawn(role)
        self.ready(role)

    def running(self, role: str) -> bool:
        return role in self.procs and self.procs[role].popen.poll() is None

    def kill(self, role: str) -> None:
        """kill -9 the role's process and everything it started (its analysis processes)."""
        proc = self.procs[role].popen
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)

    def terminate(self, role: str, timeout: float = 60) -> int:
        """SIGTERM, as systemd stops a unit; the exit status."""
        self.signal(role)
        return self.wait(role, timeout)

    def signal(self, role: str) -> None:
        proc = self.procs[role].popen
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    def wait(self, role: str, timeout: float = 60) -> int:
        proc = self.procs[role].popen
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's stack, logged
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            self.kill(role)
            raise AssertionError(f"{self.name} {role} did not stop on SIGTERM; its threads "
                                 f"were at: {self.procs[role].log}") from None

    def stop(self) -> None:
        stop_all([self])

    def client(self, email: str, password: str) -> httpx.Client:
        """A browser signed in to this node's web."""
        client = httpx.Client(base_url=self.web_url, timeout=30)
        response = sign_in(client, email, password)  # type: ignore[arg-type]
        assert response.status_code == 303, response.text
        return client


def node_config(folder: Path, db_url: str, sink: RelaySink, bus: tuple[int, int],
                **sections: dict[str, Any]) -> Config:
    base: dict[str, dict[str, Any]] = {
        "storage": {"blobs": "database"},
        "bus": {"publish": f"tcp://127.0.0.1:{bus[0]}", "subscribe": f"tcp://127.0.0.1:{bus[1]}"},
        "outbound": {"relay_host": "127.0.0.1", "relay_port": sink.port,
                     "retry_schedule_seconds": [1, 1, 1]},
        "smtp": {"rate_per_minute": 1000},
        "intake": {"workers": 1},
        # a killed process's claims go back at the next heartbeat of a live one
        "recovery": {"heartbeat_seconds": 1, "dead_after_seconds": 3},
        "web": {"shutdown_seconds": 1},  # open live streams end at once at a stop
    }
    for section, values in sections.items():
        base.setdefault(section, {}).update(values)
    folder.mkdir(parents=True, exist_ok=True)
    return make_config(folder, db_url, **base)


@contextlib.contextmanager
def nodes(tmp: Path, db_url: str, sink: RelaySink, names: tuple[str, ...] = ("a", "b"),
          **sections: dict[str, Any]) -> Iterator[tuple[list[Node], App]]:
    """Initialised nodes (nothing started yet) and an App on the shared database for the test
    to look with. The first node is the one to run the bus."""
    key = master_key()
    bus = (free_port(), free_port())
    made: list[Node] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MAILFLOW_MASTER_KEY", key)  # `initialise` and the test's App read it
        for name in names:
            config = node_config(tmp / name, db_url, sink, bus, **sections)
            initialise(config)
            smtp, web = free_port(), free_port()
            env = {**os.environ, "PYTHONFAULTHANDLER": "1", "MAILFLOW_SMTP__PORT": str(smtp),
                   "MAILFLOW_WEB__PORT": str(web)}
            made.append(Node(name, config, env, smtp, web))
        app = App.open(made[0].config)
        try:
            yield made, app
        finally:
            stop_all(made)
            app.close()


def start_all(made: list[Node], roles: tuple[str, ...] = ("smtpd", "worker", "scheduler", "web")
              ) -> None:
    """The bus on the first node, then every role on every node, started side by side."""
    made[0].start("bus")
    start_roles([(node, role) for node in made for role in roles])

def stop_all(made: list[Node], roles: tuple[str, ...] | None = None) -> list[str]:
    """SIGTERM to every (or these) roles' processes at once, then wait for each; the bus
    last, so the others' last events reach it. Returns those that had to be killed."""
    running = [(node, role) for node in made for role in node.procs
               if node.running(role) and role != "bus" and (roles is None or role in roles)]
    running += [(node, "bus") for node in made
                if (roles is None or "bus" in roles) and node.running("bus")]
    stubborn = []
    for batch in ([p for p in running if p[1] != "bus"], [p for p in running if p[1] == "bus"]):
        for node, role in batch:
            node.signal(role)
        for node, role in batch:
            try:
                node.wait(role, STOP_SECONDS)
            except AssertionError as exc:
                stubborn.append(str(exc))
    return stubborn


def start_roles(pairs: list[tuple[Node, str]], timeout: float = 120) -> None:
    """Start these processes side by side; return once every one is ready."""
    for node, role in pairs:
        node.spawn(role)
    deadline = time.monotonic() + timeout
    for node, role in pairs:
        node.ready(role, max(1.0, deadline - time.monotonic()))
