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
from mailflow.config import Config, DkimConfig, load_config
from mailflow.crypto.dkim import create_key as create_dkim_key
from mailflow.db.session import transaction
from mailflow.serve import Service
from mailflow.workflow import accounts
from mailflow.workflow.pool import AnalysisPool
from tests.support.sink import RelaySink

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("MAILFLOW_TEST_POSTGRES_URL", "")
DATABASES = ["sqlite", "postgres"] if PG_URL else ["sqlite"]
# For what only PostgreSQL has (row locks between writers): the test runs there alone, and
# where no PostgreSQL is given it is reported as having nothing to run on, not skipped by it.
postgres_only = pytest.mark.parametrize(
    "db_url", [d for d in DATABASES if d == "postgres"], indirect=True)
PASSWORD = "correct horse battery"


class MigratedTemplates:
    """One database per worker migrated once by the real migrations; each test gets a copy
    (a file copy on SQLite, CREATE DATABASE ... TEMPLATE on PostgreSQL): running seventeen
    migrations for each of a thousand tests was a quarter of the suite's time."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._sqlite: Path | None = None
        self._postgres: str | None = None

    @staticmethod
    def _migrate(url: str) -> None:
        from mailflow.db.session import make_engine, migrate

        engine = make_engine(url)
        try:
            migrate(engine)
        finally:
            engine.dispose()  # SQLite folds its write-ahead log back into the file here

    def sqlite_copy(self, target: Path) -> str:
        if self._sqlite is None:
            self._sqlite = self.folder / "template.db"
            self._migrate(f"sqlite:///{self._sqlite}")
        shutil.copyfile(self._sqlite, target)
        return f"sqlite:///{target}"

    def postgres_copy(self, name: str) -> str:
        import psycopg

        with psycopg.connect(_pg_plain(), autocommit=True) as conn:
            if self._postgres is None:
                self._postgres = f"tpl_{uuid.uuid4().hex[:16]}"
                conn.execute(f'CREATE DATABASE "{self._postgres}"')
                self._migrate(_pg_url(self._postgres))
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self._postgres}"')
        return _pg_url(name)

    def drop(self) -> None:
        if self._postgres is not None:
            _drop_pg_database(self._postgres)


def _pg_plain(database: str | None = None) -> str:
    """MAILFLOW_TEST_POSTGRES_URL for psycopg, on another database of the same server."""
    plain = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    return plain if database is None else _with_database(plain, database)


def _pg_url(database: str) -> str:
    return _with_database(PG_URL, database)


def _with_database(url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=database).render_as_string(hide_password=False)


def _drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(_pg_plain(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MigratedTemplates]:
    templates = MigratedTemplates(tmp_path_factory.mktemp("templates"))
    yield templates
    templates.drop()


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path,
           migrated_templates: MigratedTemplates) -> Iterator[str]:
    """A database of its own for the test, already at the newest schema."""
    if request.param == "sqlite":
        yield migrated_templates.sqlite_copy(tmp_path / "mailflow.db")
        return
    name = f"t_{uuid.uuid4().hex[:16]}"
    yield migrated_templates.postgres_copy(name)
    _drop_pg_database(name)


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


def shared_dkim_key(tmp_path: Path) -> Path:
    """A DKIM key in the session's temporary folder (tmp_path's parent, one per xdist worker),
    made the way `mailflow init` makes one."""
    path = tmp_path.parent / "shared-dkim.key"
    create_dkim_key(path, DkimConfig().key_bits)
    return path


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
        "signin": {"slow_seconds": 0.01, "slow_max_seconds": 0.04,
                   # a real argon2id hash, at the least cost: a tenth of a second per
                   # password was a tenth of the suite's time
                   "hash_time_cost": 1, "hash_memory_kib": 8, "hash_parallelism": 1},
        # one DKIM key per test session, not an RSA key made by every test's `initialise`
        # (tests/e2e/test_dkim.py uses the key `mailflow init` makes, key_file = "")
        "dkim": {"key_file": str(shared_dkim_key(tmp_path))},
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


def thread_stacks() -> str:
    """Where every thread of this process is: what a hang's report needs to be acted on."""
    import sys
    import traceback

    names = {t.ident: t.name for t in threading.enumerate()}
    return "\n".join(
        f"--- {names.get(ident, ident)}\n" + "".join(traceback.format_stack(frame))
        for ident, frame in sys._current_frames().items())


class RunningService:
    """The real service on an ephemeral port, in a thread with its own event loop."""

    def __init__(self, app: App, pool: AnalysisPool, parts: tuple[str, ...],
                 smtp_port: int = 0) -> None:
        self.app = app
        self._smtp_port = smtp_port  # 0: one the kernel picks; a fixed one to restart on it
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
            self.service = Service(self.app, self._parts, smtp_port=self._smtp_port,
                                   pool=self._pool,
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
        # a service left running outlives its test's database and pollutes the next tests
        assert not self._thread.is_alive(), (
            "the service did not stop within 60 s; its threads were at:\n" + thread_stacks())


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
