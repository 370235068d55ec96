"""Issue #11 item 8: `mailflow backup` while the service runs, `mailflow restore` into an empty
folder and database, and the restored copy works (audit chain, same case, same report, new
cases); a wrong passphrase, an altered or cut archive and a non-empty target are refused."""

from __future__ import annotations

import io
import os
import tarfile
import threading
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select

from mailflow import audit
from mailflow.app import App
from mailflow.config import Config
from mailflow.db.models import AuditEvent, OutboxStatus
from mailflow.db.session import transaction
from mailflow.store.sealed_stream import SealedReader, SealedWriter
from mailflow.workflow import accounts
from mailflow.workflow.pool import AnalysisPool
from tests.conftest import PASSWORD, PG_URL, RunningService, make_config
from tests.support.backup import PASSPHRASE, backup, kind_of, new_database, restore
from tests.support.cases import CASE_NUMBER, CASES, three_photos
from tests.support.cli import cli_json, run_cli
from tests.support.db import outbox
from tests.support.mail import FULL_FORM, case_email, submit, wait_until
from tests.support.review import ANSWER, answer, open_case, pdf_text
from tests.support.sink import RelaySink

SECOND = "dr.second@clinic.test"


@pytest.fixture
def empty_db_url(db_url: str, tmp_path: Path) -> Iterator[str]:
    with new_database(kind_of(db_url), tmp_path) as url:
        yield url


@pytest.fixture
def target(tmp_path: Path, empty_db_url: str, sink: RelaySink) -> Config:
    """A fresh configuration: an empty storage folder and an empty database (no init)."""
    folder = tmp_path / "restored"
    folder.mkdir()
    return make_config(
        folder, empty_db_url,
        outbound={"relay_host": "127.0.0.1", "relay_port": sink.port,
                  "retry_schedule_seconds": [1, 1, 1]},
        smtp={"rate_per_minute": 1000},
    )


def table_names(config: Config) -> list[str]:
    engine = create_engine(config.database_url)
    try:
        with engine.connect() as conn:
            return inspect(conn).get_table_names()
    finally:
        engine.dispose()


def audit_actions(app: App) -> list[str]:
    with app.sessions() as session:
        return list(session.execute(select(AuditEvent.action).order_by(AuditEvent.id)).scalars())


def assert_nothing_restored(config: Config) -> None:
    assert not config.storage_dir.exists()
    assert table_names(config) == []


def test_a_backup_taken_while_running_restores_into_a_working_installation(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str], tmp_path: Path, target: Config, process_pool: AnalysisPool,
) -> None:
    number, _ack, notification = open_case(service, sink, provider, dermatologists[0])
    answer(service, app, dermatologists[0], notification, ANSWER)
    sink.wait_for(provider, count=2)
    wait_until(lambda: all(o.status == OutboxStatus.SENT for o in outbox(app)), 30,
               "every email sent")
    with transaction(app.sessions) as session:  # used only on the restored copy
        accounts.add(session, email=SECOND, name="Dr Sam Second", role="provider",
                     password=PASSWORD, approved=True, license_state="NY")

    archive = tmp_path / "mailflow.backup"
    meanwhile = threading.Thread(target=submit, args=(
        service.port, provider, PASSWORD, case_email(provider, CASES, FULL_FORM, three_photos())))
    meanwhile.start()  # the service keeps taking cases while the backup runs
    written = backup(config, archive)
    meanwhile.join()
    assert "backup written" in written
    assert b"Testpatient" not in archive.read_bytes() and b"Nummular" not in archive.read_bytes()

    done = restore(target, archive)
    assert "restored:" in done.stdout and "\r" not in done.stderr  # no bar when not a terminal
    assert cli_json(target, "audit", "verify")["ok"]
    assert cli_json(target, "cases", "show", number) == cli_json(config, "cases", "show", number)
    for where in (config, target):
        run_cli(where, "cases", "report", number, "--out", str(tmp_path / f"{where is target}.pdf"))
    restored_pdf = pdf_text((tmp_path / "True.pdf").read_bytes())
    assert restored_pdf == pdf_text((tmp_path / "False.pdf").read_bytes())
    assert "Nummular eczema" in restored_pdf and "Jane Testpatient" in restored_pdf

    restored_app = App.open(target)
    assert "backup.made" in audit_actions(app) and "backup.made" not in audit_actions(restored_app)
    assert audit_actions(restored_app)[-3:] == ["backup.restored", "case.viewed", "report.read"]
    running = RunningService(restored_app, process_pool, ("smtp", "worker", "outbox")).start()
    try:
        code, text = submit(running.port, SECOND, PASSWORD,
                            case_email(SECOND, CASES, FULL_FORM, three_photos()))
        assert code == 250, text
        ack = sink.wait_for(SECOND)[0]
        new_number = CASE_NUMBER.search(str(ack.message["Subject"])).group(0)
        assert new_number != number and "STILL NEEDED" not in ack.text
        shown = cli_json(target, "cases", "show", new_number)
        assert len(shown["images"]) == 3 and shown["fields"]["patient_name"] == "Jane Testpatient"
    finally:
        running.stop()
        restored_app.close()
    assert cli_json(target, "audit", "verify")["ok"]


@pytest.fixture
def archive(app: App, provider: str, config: Config, tmp_path: Path) -> Path:
    """A backup of several chunks (random blobs do not compress)."""
    for _ in range(3):
        app.blobs.put(os.urandom(1_000_000))
    path = tmp_path / "small.backup"
    backup(config, path)
    assert path.stat().st_size > 3_000_000
    return path


def test_a_wrong_passphrase_is_refused_and_nothing_restored(
    archive: Path, target: Config
) -> None:
    refused = restore(target, archive, passphrase="not the passphrase at all", check=False)
    assert refused.returncode == 1
    assert "wrong passphrase" in refused.stderr and "nothing was restored" in refused.stderr
    assert_nothing_restored(target)


@pytest.mark.parametrize("damage", ["flip a byte near the end", "cut off the end"])
def test_an_altered_or_cut_archive_is_refused_and_nothing_restored(
    archive: Path, target: Config, damage: str
) -> None:
    data = bytearray(archive.read_bytes())
    if damage.startswith("flip"):
        data[-100] ^= 0x01  # in the last chunk: everything before it checks out
    else:
        del data[-1000:]
    archive.write_bytes(bytes(data))
    refused = restore(target, archive, check=False)
    assert refused.returncode == 1
    assert "altered" in refused.stderr or "cut short" in refused.stderr, refused.stderr
    assert_nothing_restored(target)


def test_restoring_into_a_folder_or_database_in_use_is_refused(
    archive: Path, config: Config, target: Config, tmp_path: Path
) -> None:
    refused = restore(config, archive, check=False)  # the running installation itself
    assert refused.returncode == 1 and "is not empty" in refused.stderr
    (tmp_path / "other").mkdir()
    in_use_db = make_config(tmp_path / "other", config.database_url)
    refused = restore(in_use_db, archive, check=False)
    assert refused.returncode == 1 and "database already has tables" in refused.stderr
    assert not in_use_db.storage_dir.exists()

    restore(target, archive)
    again = restore(target, archive, check=False)
    assert again.returncode == 1 and "is not empty" in again.stderr


def test_a_backup_of_another_schema_revision_is_refused(
    archive: Path, target: Config, tmp_path: Path
) -> None:
    older = tmp_path / "older.backup"
    with archive.open("rb") as src, older.open("wb") as out:
        sealed = SealedWriter(out, PASSPHRASE)
        with tarfile.open(fileobj=SealedReader(src, PASSPHRASE), mode="r|") as tar_in, \
                tarfile.open(fileobj=sealed, mode="w|") as tar_out:
            for member in tar_in:
                data = tar_in.extractfile(member).read()  # type: ignore[union-attr]
                if member.name == "manifest.json":
                    data = data.replace(b'"schema_revision": "', b'"schema_revision": "x')
                    member.size = len(data)
                tar_out.addfile(member, io.BytesIO(data))
        sealed.close()
    refused = restore(target, older, check=False)
    assert refused.returncode == 1 and "schema revision x" in refused.stderr, refused.stderr
    assert_nothing_restored(target)


@pytest.mark.skipif(not PG_URL, reason="needs PostgreSQL (MAILFLOW_TEST_POSTGRES_URL)")
def test_a_backup_restores_onto_the_other_kind_of_database(
    archive: Path, app: App, config: Config, db_url: str, tmp_path: Path
) -> None:
    other_kind = "postgres" if kind_of(db_url) == "sqlite" else "sqlite"
    (tmp_path / "other").mkdir()
    with new_database(other_kind, tmp_path) as other_url:
        other = make_config(tmp_path / "other", other_url)
        restore(other, archive)
        assert cli_json(other, "audit", "verify")["ok"]
        assert cli_json(other, "users", "list") == cli_json(config, "users", "list")
        moved = App.open(other)
        try:
            for blob in (config.storage_dir / "blobs").rglob("*"):
                if blob.is_file():
                    assert moved.blobs.get(blob.name) == app.blobs.get(blob.name)
        finally:
            moved.close()


def test_the_backup_is_one_moment_even_when_the_service_writes_in_the_middle(
    app: App, provider: str, config: Config, target: Config, tmp_path: Path
) -> None:
    """A write that commits after the audit head was copied but before the audit events are:
    a backup that read each table at its own moment would hold a broken chain."""
    from mailflow.store.backup import write_backup
    from mailflow.store.restore import restore as restore_archive

    calls = 0

    def write_meanwhile(_rows: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:  # accounts and audit_head are in the archive; audit_events are not yet
            with transaction(app.sessions) as session:
                accounts.add(session, email="dr.late@clinic.test", name="Dr Late",
                             role="provider", password=PASSWORD, approved=True)

    path = tmp_path / "moment.backup"
    write_backup(config, path, PASSPHRASE, write_meanwhile)
    assert calls >= 2
    restore_archive(target, path, PASSPHRASE, lambda _label, _total: nullcontext(lambda _n: None))
    restored = App.open(target)
    try:
        with restored.sessions() as session:
            assert audit.verify(session).ok
        emails = [a["email"] for a in cli_json(target, "users", "list")]
        assert provider in emails and "dr.late@clinic.test" not in emails
    finally:
        restored.close()


def test_a_restore_into_the_shipped_layout_with_the_database_inside_the_storage_folder(
    archive: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "shipped"
    folder.mkdir()
    shipped = make_config(folder, "sqlite:///var/mailflow.db", storage={"path": "var"})
    assert not shipped.storage_dir.exists()
    restore(shipped, archive)
    assert cli_json(shipped, "audit", "verify")["ok"]
    assert (shipped.storage_dir / "mailflow.db").exists()
