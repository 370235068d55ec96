"""Shared fixtures: a database per test (SQLite, and PostgreSQL when
MAILFLOW_TEST_POSTGRES_URL is set), a configured and initialised app, a real relay sink, and
the real service (SMTP door, worker, delivery) running in a thread."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailflow.app import App, initialise
from mailflow.config import Config, load_config
from mailflow.db.session import transaction
from mailflow.serve import Service
from mailflow.workflow import accounts
from mailflow.workflow.pool import AnalysisPool
from tests.support.sink import RelaySink

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("MAILFLOW_TEST_POSTGRES_URL", "")
DATABASES = ["sqlite", "postgres"] if PG_URL else ["sqlite"]
PASSWORD = "correct horse battery"


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/mailflow.db"
        return
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    plain = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


TEST_ROSTER = """
timezone = "America/New_York"
{entries}
"""
ROSTER_ENTRY = """
[[dermatologist]]
email = "{email}"
max_open = {max_open}
states = {states}
on_call_lead = {lead}
[dermatologist.hours]
mon = ["00:00-24:00"]
tue = ["00:00-24:00"]
wed = ["00:00-24:00"]
thu = ["00:00-24:00"]
fri = ["00:00-24:00"]
sat = ["00:00-24:00"]
sun = ["00:00-24:00"]
"""
DERMS = ("derm.one@derm.localhost", "derm.two@derm.localhost")


def write_schedules(tmp_path: Path, roster: str | None = None) -> Path:
    """The repository's schedules/, with a roster of dermatologists on duty around the clock
    (the roster's own tests use their own hours)."""
    folder = tmp_path / "schedules"
    shutil.copytree(ROOT / "schedules", folder, dirs_exist_ok=True)
    if roster is None:
        roster = TEST_ROSTER.format(entries="".join(
            ROSTER_ENTRY.format(email=e, max_open=10, states="[]", lead=str(i == 0).lower())
            for i, e in enumerate(DERMS)))
    (folder / "roster.toml").write_text(roster)
    return folder


def make_config(tmp_path: Path, db_url: str, **sections: dict[str, object]) -> Config:
    """Write a real config.toml for the test (so the CLI in a subprocess reads the same)."""
    values: dict[str, dict[str, object]] = {
        "database": {"url": db_url},
        "storage": {"path": str(tmp_path / "var")},
        "templates": {"path": str(ROOT / "templates")},
        "schedules": {"path": str(write_schedules(tmp_path))},
        # the relay sink speaks plain SMTP (a relay_host otherwise means STARTTLS)
        "outbound": {"maildir_path": str(tmp_path / "var" / "outgoing"), "poll_seconds": 0.2,
                     "relay_starttls": False},
        "intake": {"poll_seconds": 0.2},
        "logging": {"level": "INFO"},
        # the sign-in slow-down is real asyncio.sleep: hundredths here (its own tests check it)
        "signin": {"slow_seconds": 0.01, "slow_max_seconds": 0.04},
    }
    for section, entries in sections.items():
        values.setdefault(section, {}).update(entries)
    lines = []
    for section, entries in values.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in entries.items()]
        lines.append("")
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines))
    return load_config(path, environ={})


@pytest.fixture
def sink() -> Iterator[RelaySink]:
    relay = RelaySink()
    relay.start()
    yield relay
    relay.stop()


@pytest.fixture
def config(tmp_path: Path, db_url: str, sink: RelaySink) -> Config:
    cfg = make_config(
        tmp_path,
        db_url,
        outbound={
            "relay_host": "127.0.0.1",
            "relay_port": sink.port,
            "retry_schedule_seconds": [1, 1, 1],
        },
        smtp={"rate_per_minute": 1000},  # the rate limit has its own test
    )
    initialise(cfg)
    return cfg


@pytest.fixture
def app(config: Config) -> Iterator[App]:
    application = App.open(config)
    yield application
    application.close()


@pytest.fixture(scope="session")
def process_pool() -> Iterator[AnalysisPool]:
    pool = AnalysisPool(2)
    yield pool
    pool.shutdown()


class RunningService:
    """The real service on an ephemeral port, in a thread with its own event loop."""

    def __init__(self, app: App, pool: AnalysisPool, parts: tuple[str, ...]) -> None:
        self.app = app
        self.service: Service | None = None
        self._pool = pool
        self._parts = parts
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self.service = Service(self.app, self._parts, smtp_port=0, pool=self._pool,
                                   web_port=0)
            runner = asyncio.create_task(self.service.run())
            await self.service.ready.wait()
            self._started.set()
            await runner

        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._started.set()

    def start(self) -> RunningService:
        self._thread.start()
        if not self._started.wait(60) or self._error is not None:
            raise RuntimeError(f"the service did not start: {self._error!r}")
        return self

    @property
    def port(self) -> int:
        assert self.service is not None and self.service.smtp_address is not None
        return self.service.smtp_address[1]

    @property
    def web_url(self) -> str:
        assert self.service is not None and self.service.web_address is not None
        host, port = self.service.web_address
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._loop is not None and self.service is not None:
            self._loop.call_soon_threadsafe(self.service.stop)
        self._thread.join(60)


@pytest.fixture
def service(app: App, process_pool: AnalysisPool) -> Iterator[RunningService]:
    running = RunningService(app, process_pool, ("smtp", "worker", "reports", "outbox")).start()
    yield running
    running.stop()


@pytest.fixture
def provider(app: App) -> str:
    with transaction(app.sessions) as session:
        accounts.add(
            session,
            email="dr.family@clinic.test",
            name="Dr Pat Family",
            role="provider",
            password=PASSWORD,
            approved=True,
            license_state="NY",
        )
    return "dr.family@clinic.test"


@pytest.fixture
def dermatologists(app: App) -> tuple[str, str]:
    with transaction(app.sessions) as session:
        for i, email in enumerate(DERMS):
            accounts.add(session, email=email, name=f"Dr Derm {('One', 'Two')[i]}",
                         role="dermatologist", password=PASSWORD, approved=True,
                         credentials="MD, FAAD")
    return DERMS
