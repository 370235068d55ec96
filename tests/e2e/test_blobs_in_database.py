"""Issue #13 item 1: blobs in the database (`[storage] blobs = "database"`), sealed as on disk,
and `mailflow blobs migrate` between the files and the database (resumable, checked)."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from mailflow.app import App, initialise
from mailflow.config import Config
from mailflow.crypto.keys import derive, unseal
from mailflow.crypto.keyset import read_master
from mailflow.db.blob_models import BlobChunk, BlobRow
from mailflow.db.models import CaseImage, InboundMessage
from mailflow.db.session import transaction
from mailflow.workflow import accounts
from tests.conftest import PASSWORD, RunningService, make_config
from tests.support.backup import backup, kind_of, new_database, restore
from tests.support.cases import send_case
from tests.support.cli import cli_json, run_cli
from tests.support.closed import closed_case
from tests.support.review import ANSWER, answer, open_case, pdf_of, pdf_text
from tests.support.sink import RelaySink
from tests.support.web import people, web  # noqa: F401  (fixtures)

NEEDLE = b"Testpatient"  # FULL_FORM's patient: in every raw case message, in clear


def blobs_config(tmp_path: Path, db_url: str, sink: RelaySink, where: str) -> Config:
    return make_config(
        tmp_path, db_url, storage={"blobs": where},
        outbound={"relay_host": "127.0.0.1", "relay_port": sink.port,
                  "retry_schedule_seconds": [1, 1, 1]},
        smtp={"rate_per_minute": 1000},
    )


@pytest.fixture
def config(tmp_path: Path, db_url: str, sink: RelaySink) -> Config:
    cfg = blobs_config(tmp_path, db_url, sink, "database")
    initialise(cfg)
    return cfg


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def chunks(app: App) -> list[bytes]:
    with app.engine.connect() as conn:
        return [bytes(d) for d in conn.scalars(select(BlobChunk.data))]


def test_a_case_through_the_door_is_stored_sealed_in_the_database_and_shown(
    service: RunningService, app: App, sink: RelaySink, config: Config,
    dermatologists: tuple[str, str], provider: str, people: dict[str, str],  # noqa: F811
    web: Callable[[str | None], TestClient],  # noqa: F811
) -> None:
    number, _ack, notification = open_case(service, sink, provider, dermatologists[0])
    answer(service, app, dermatologists[0], notification, ANSWER)
    report = sink.wait_for(provider, count=2)[1]
    assert "Nummular eczema" in pdf_text(pdf_of(report))

    assert files_under(config.storage_dir / "blobs") == []  # nothing on this machine's disk
    with app.sessions() as session:
        raw_sha = session.scalars(select(InboundMessage.blob_sha)).first()
        images = session.scalars(select(CaseImage)).all()
    assert raw_sha and NEEDLE in app.blobs.get(raw_sha)  # the marker is in the plaintext
    stored = chunks(app)
    assert stored and not any(NEEDLE in chunk for chunk in stored)  # but not at rest
    assert len(images) == 3
    derm = web(dermatologists[0])
    for position in (1, 2, 3):
        photo = derm.get(f"/cases/{number}/photos/{position}/photo")
        assert photo.status_code == 200 and photo.content.startswith(b"\xff\xd8")
    pdf = derm.get(f"/cases/{number}/report.pdf")
    assert pdf.status_code == 200 and "Nummular eczema" in pdf_text(pdf.content)


def test_a_big_blob_is_kept_in_chunks_and_read_back_whole(app: App) -> None:
    data = bytes(range(256)) * (5 * 1024 * 16)  # 20 MiB
    sha = app.blobs.put(data)
    with app.engine.connect() as conn:
        sizes = conn.scalars(select(func.length(BlobChunk.data)).where(BlobChunk.name == sha)
                             .order_by(BlobChunk.seq)).all()
    assert len(sizes) == 21 and max(sizes) == app.config.storage.chunk_bytes
    assert app.blobs.get(sha) == data
    assert app.blobs.put(data) == sha and len(chunks(app)) == 21  # stored once


def test_key_rotation_reseals_the_blobs_in_the_database(
    app: App, config: Config, provider: str, dermatologists: tuple[str, str],
) -> None:
    number = closed_case(app, provider, dermatologists[0], (1, 2, 3))  # photos, mail, a PDF
    before = cli_json(config, "cases", "show", number)
    out = run_cli(config, "keys", "rotate").stdout
    files = int(re.search(r"and (\d+) files re-encrypted", out).group(1))  # type: ignore[union-attr]
    with app.engine.connect() as conn:
        count = conn.scalar(select(func.count()).select_from(BlobRow))
    assert files == count and files > 0
    new_key = derive(read_master(app.keys.folder / "key-1.key"), "mailflow blobs v1")
    for sha in app.blobs.files():
        with app.engine.connect() as conn:
            sealed = b"".join(conn.scalars(select(BlobChunk.data).where(BlobChunk.name == sha)
                                           .order_by(BlobChunk.seq)))
        unseal(new_key, sealed, sha.encode())  # the new key alone opens every blob
    status = cli_json(config, "keys", "status")
    assert status["left_under_older_keys"] == 0 and status["unreadable"] == []
    assert cli_json(config, "cases", "show", number) == before
    out_pdf = config.base_dir / "r.pdf"
    run_cli(config, "cases", "report", number, "--out", str(out_pdf))
    assert out_pdf.read_bytes().startswith(b"%PDF")


PROGRESS = re.compile(r"^blobs (\d+)/(\d+)", re.M)


def test_migrate_to_the_database_and_back_resumes_and_refuses_a_damaged_blob(
    tmp_path: Path, db_url: str, sink: RelaySink,
) -> None:
    on_files = blobs_config(tmp_path, db_url, sink, "files")
    initialise(on_files)
    app = App.open(on_files)
    try:
        provider = "dr.family@clinic.test"
        with transaction(app.sessions) as session:
            accounts.add(session, email=provider, name="Dr Pat Family", role="provider",
                         password=PASSWORD, approved=True, license_state="NY")
        send_case(app, provider)
        before = {sha: app.blobs.get(sha) for sha in app.blobs.files()}
        total = len(before)
        assert total >= 5

        first = run_cli(on_files, "blobs", "migrate", "--to", "database", "--limit", "2").stdout
        assert [m.groups() for m in PROGRESS.finditer(first)][-1] == ("2", str(total))
        assert "2 copied" in first and "run the same command again" in first
        again = run_cli(on_files, "blobs", "migrate", "--to", "database")
        assert f"blobs {total}/{total}" in again.stdout
        assert f"{total - 2} copied, 2 already there and checked" in again.stdout
        assert 'set [storage] blobs = "database"' in again.stdout
        assert "database: " + str(total) in run_cli(on_files, "blobs", "status").stdout
        early = run_cli(on_files, "blobs", "migrate", "--to", "database", "--remove-source",
                        check=False)  # the service still reads the files: nothing deleted
        assert early.returncode == 1 and '[storage] blobs = "database"' in early.stderr
        assert len(files_under(on_files.storage_dir / "blobs")) == total

        on_db = blobs_config(tmp_path, db_url, sink, "database")  # switched
        removed = run_cli(on_db, "blobs", "migrate", "--to", "database", "--remove-source")
        assert f"{total} removed from the files" in removed.stdout
        assert files_under(on_files.storage_dir / "blobs") == []
        in_db = App.open(on_db)
        try:  # what the service reads once switched: every blob, from the table
            assert {sha: in_db.blobs.get(sha) for sha in in_db.blobs.files()} == before
        finally:
            in_db.close()
        with app.sessions() as session:  # one photo's chunk damaged in the table
            damaged = session.scalars(select(CaseImage.clean_sha)).first()
        with app.engine.begin() as conn:
            conn.execute(update(BlobChunk).where(BlobChunk.name == damaged, BlobChunk.seq == 0)
                         .values(data=b"\0" * 64))
        back = run_cli(on_db, "blobs", "migrate", "--to", "files", check=False)
        assert back.returncode == 1
        assert f"{total - 1} copied" in back.stdout
        assert "1 failed their check" in back.stdout and damaged[:12] in back.stdout
        names = {p.name for p in files_under(on_db.storage_dir / "blobs")}
        assert damaged not in names and len(names) == total - 1
        assert {sha: app.blobs.get(sha) for sha in names} == {  # the files store reads them
            sha: data for sha, data in before.items() if sha != damaged}
    finally:
        app.close()


def test_a_backup_carries_the_blobs_in_the_database_and_restores_them(
    app: App, config: Config, provider: str, dermatologists: tuple[str, str], tmp_path: Path,
    db_url: str,
) -> None:
    number = closed_case(app, provider, dermatologists[0], (1, 2, 3))
    stored = {sha: app.blobs.get(sha) for sha in app.blobs.files()}
    archive = tmp_path / "db-blobs.backup"
    backup(config, archive)
    with new_database(kind_of(db_url), tmp_path) as url:
        folder = tmp_path / "restored"
        folder.mkdir()
        target = make_config(folder, url, storage={"blobs": "database"})
        restore(target, archive)
        assert files_under(target.storage_dir / "blobs") == []
        restored = App.open(target)
        try:
            assert {sha: restored.blobs.get(sha) for sha in restored.blobs.files()} == stored
        finally:
            restored.close()
        out = tmp_path / "restored.pdf"
        run_cli(target, "cases", "report", number, "--out", str(out))
        assert "Nummular eczema" in pdf_text(out.read_bytes())


def test_with_the_key_in_the_environment_a_machine_keeps_no_key_and_no_blob_on_disk(
    tmp_path: Path, db_url: str, sink: RelaySink, monkeypatch: pytest.MonkeyPatch,
) -> None:
    master = os.urandom(32)
    monkeypatch.setenv("MAILFLOW_MASTER_KEY", base64.b64encode(master).decode())
    cfg = blobs_config(tmp_path, db_url, sink, "database")
    initialise(cfg)
    keys = cfg.storage_dir / "keys"
    assert not any(p.name.endswith(".key") for p in files_under(keys))
    app = App.open(cfg)
    try:
        with transaction(app.sessions) as session:
            accounts.add(session, email="dr.family@clinic.test", name="Dr Pat Family",
                         role="provider", password=PASSWORD, approved=True, license_state="NY")
        number = send_case(app, "dr.family@clinic.test")
        assert len(cli_json(cfg, "cases", "show", number)["images"]) == 3
        sha = next(app.blobs.files())
        with app.engine.connect() as conn:
            sealed = b"".join(conn.scalars(select(BlobChunk.data).where(BlobChunk.name == sha)
                                           .order_by(BlobChunk.seq)))
        assert unseal(derive(master, "mailflow blobs v1"), sealed, sha.encode())  # its key
        rotated = run_cli(cfg, "keys", "rotate", check=False)
        assert rotated.returncode == 1 and "MAILFLOW_MASTER_KEY" in rotated.stderr
    finally:
        app.close()
    assert files_under(cfg.storage_dir / "blobs") == []
    assert not any(p.name.endswith(".key") for p in files_under(keys))
    monkeypatch.setenv("MAILFLOW_MASTER_KEY", os.urandom(32).hex())  # another machine's key
    other = run_cli(cfg, "cases", "show", number, check=False, process=True)
    assert other.returncode != 0, other.stderr


def test_a_key_in_the_environment_and_another_on_disk_are_refused(
    tmp_path: Path, db_url: str, sink: RelaySink, monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = blobs_config(tmp_path, db_url, sink, "database")
    initialise(cfg)  # without the variable (as under sudo): a master.key of its own on disk
    monkeypatch.setenv("MAILFLOW_MASTER_KEY", os.urandom(32).hex())
    refused = run_cli(cfg, "cases", "list", check=False, process=True)
    assert refused.returncode == 1 and "hold different keys" in refused.stderr
    master = (cfg.storage_dir / "keys" / "master.key")
    from mailflow.crypto.keyset import read_master

    monkeypatch.setenv("MAILFLOW_MASTER_KEY", read_master(master).hex())  # the same key: fine
    assert run_cli(cfg, "cases", "list", process=True).stdout.strip() == "no cases"
