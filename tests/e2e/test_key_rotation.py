"""Issue #11 item 9: `mailflow keys rotate` re-encrypts every encrypted column and blob under a
new key while the service runs; killed with SIGKILL midway it leaves everything readable and a
second run finishes; afterwards the new key ALONE opens everything, and the old key is
retired. A value the service changes during the rotation is not overwritten."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from mailflow.app import App
from mailflow.config import Config
from mailflow.crypto.keys import derive, unseal
from mailflow.crypto.keyset import add_key, read_master
from mailflow.db.models import Account, AuditEvent
from mailflow.db.session import transaction
from mailflow.store.backup import write_backup
from mailflow.store.blobs import RESEAL_PREFIX, lock_path
from mailflow.store.rotate_columns import encrypted_tables, read_batch, write_batch
from mailflow.workflow.key_rotation import rotate
from tests.conftest import PASSWORD, RunningService, make_config
from tests.support import cli
from tests.support.backup import PASSPHRASE, backup, kind_of, new_database, restore
from tests.support.cases import CASES, three_photos
from tests.support.mail import FULL_FORM, case_email, submit, wait_until
from tests.support.review import ANSWER, answer, open_case, pdf_text
from tests.support.sink import RelaySink

PROGRESS = re.compile(r"^\s+(\S+) (\d+)/(\d+)$")


def run_cli(config: Config, *args: str, **options: Any) -> subprocess.CompletedProcess[str]:
    """Each command a process of its own, as an admin's would be: it reads the keys from disk,
    never from this process's caches."""
    return cli.run_cli(config, *args, process=True, **options)


def cli_json(config: Config, *args: str) -> Any:
    return json.loads(run_cli(config, *args, "--json").stdout)


def start_rotation(config: Config, **settings: object) -> subprocess.Popen[str]:
    env = {**os.environ, **{f"MAILFLOW_KEYS__{k.upper()}": str(v) for k, v in settings.items()}}
    return subprocess.Popen(
        [sys.executable, "-m", "mailflow", "--config", str(config.base_dir / "config.toml"),
         "keys", "rotate"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def read_until(proc: subprocess.Popen[str], wanted: re.Pattern[str]) -> list[str]:
    """The rotation's output up to and including the first line matching `wanted`."""
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if wanted.search(line):
            return lines
    raise AssertionError(f"the rotation ended first: {lines}\n{proc.stderr.read()}")  # type: ignore[union-attr]


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(60) == -signal.SIGKILL
    for stream in (proc.stdout, proc.stderr):
        assert stream is not None
        stream.close()


@contextmanager
def blob_lock_held(config: Config) -> Iterator[None]:
    """Hold the blob store's lock shared, as a `put` marking a file used does: a reseal
    cannot put its new file in place until it is released."""
    fd = os.open(lock_path(config.storage_dir / "blobs"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def assert_readable(config: Config, number: str, shown: dict[str, object], tmp_path: Path,
                    name: str) -> None:
    assert cli_json(config, "cases", "show", number) == shown
    out = tmp_path / f"{name}.pdf"
    run_cli(config, "cases", "report", number, "--out", str(out))
    text = pdf_text(out.read_bytes())
    assert "Nummular eczema" in text and "Jane Testpatient" in text


def new_case_is_accepted(service: RunningService, sink: RelaySink, provider: str) -> None:
    before = len(sink.to(provider))
    code, text = submit(service.port, provider, PASSWORD,
                        case_email(provider, CASES, FULL_FORM, three_photos()))
    assert code == 250, text
    sink.wait_for(provider, count=before + 1)  # its acknowledgement: read and answered


def stored_column_values(app: App) -> Iterator[tuple[str, str]]:
    with app.engine.connect() as conn:
        for et in encrypted_tables():
            for row in conn.execute(select(et.pk, *(et.table.c[c] for c in et.columns))):
                for name, value in zip(et.columns, row[1:], strict=True):
                    if value is not None:
                        yield f"{et.name} {row[0]} {name}", value


def opens_with_column_key_alone(app: App, key_file: Path) -> list[str]:
    """The stored column values that do NOT open with this key file's column key."""
    column_key = derive(read_master(key_file), "mailflow columns v1")
    failed = []
    for where, value in stored_column_values(app):
        try:
            unseal(column_key, base64.b64decode(value))
        except Exception:
            failed.append(where)
    return failed


def blobs_not_opening_with(config: Config, key_file: Path) -> list[str]:
    blob_key = derive(read_master(key_file), "mailflow blobs v1")
    failed = []
    for path in (config.storage_dir / "blobs").glob("*/*/*"):
        if path.name.startswith("."):
            continue
        try:
            unseal(blob_key, path.read_bytes(), path.name.encode())
        except Exception:
            failed.append(path.name[:12])
    return failed


def test_a_rotation_killed_midway_resumes_and_the_new_key_alone_opens_everything(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str], tmp_path: Path,
) -> None:
    number, _ack, notification = open_case(service, sink, provider, dermatologists[0])
    answer(service, app, dermatologists[0], notification, ANSWER)
    sink.wait_for(provider, count=2)  # the consult PDF went out
    shown = cli_json(config, "cases", "show", number)
    keys = config.storage_dir / "keys"
    old_key, new_key = keys / "master.key", keys / "key-1.key"
    files = sum(1 for p in (config.storage_dir / "blobs").glob("*/*/*")
                if not p.name.startswith("."))

    # 1: killed after its first batch of rows, while it rests before the next
    first = start_rotation(config, batch_size=1, pause_seconds=600)
    lines = read_until(first, PROGRESS)
    table, done, _total = PROGRESS.match(lines[-1]).groups()  # type: ignore[union-attr]
    assert table != "blobs" and int(done) == 1
    kill(first)
    assert new_key.exists() and old_key.exists()
    still_old = opens_with_column_key_alone(app, new_key)  # some done, not all
    assert still_old and len(still_old) < sum(1 for _ in stored_column_values(app))
    assert_readable(config, number, shown, tmp_path, "after-first-kill")
    new_case_is_accepted(service, sink, provider)  # sealed under the new key, read back

    # 2: the columns finish; killed in the files, a new file written and not yet in place
    with blob_lock_held(config):
        second = start_rotation(config, batch_size=1)
        read_until(second, re.compile(r"^\s+blobs 0/"))
        blobs = config.storage_dir / "blobs"
        wait_until(lambda: list(blobs.glob(f"*/*/{RESEAL_PREFIX}*")), 60, "a reseal under way")
        kill(second)
    assert opens_with_column_key_alone(app, new_key) == []
    assert blobs_not_opening_with(config, new_key)  # files still under the old key
    assert_readable(config, number, shown, tmp_path, "after-second-kill")
    new_case_is_accepted(service, sink, provider)

    # 3: to the end
    done_run = run_cli(config, "keys", "rotate", "--help")
    assert "reply addresses" in done_run.stdout  # what does not rotate, said
    finished = run_cli(config, "keys", "rotate").stdout
    assert "resuming the rotation to key-1.key" in finished
    assert "retired master.key" in finished
    assert not old_key.exists() and (keys / "retired" / "master.key").exists()
    assert not list((config.storage_dir / "blobs").glob(f"*/*/{RESEAL_PREFIX}*"))
    status = cli_json(config, "keys", "status")
    assert status["left_under_older_keys"] == 0 and status["unreadable"] == []
    assert {k["name"]: k["state"] for k in status["keys"]} == {
        "key-1.key": "current", "master.key": "retired"}

    # the new key ALONE opens every encrypted value and every file
    assert opens_with_column_key_alone(app, new_key) == []
    assert blobs_not_opening_with(config, new_key) == []
    blob_count = sum(1 for p in (config.storage_dir / "blobs").glob("*/*/*")
                     if not p.name.startswith("."))
    assert blob_count > files  # the cases sent during the rotation are there too
    assert_readable(config, number, shown, tmp_path, "after-rotation")
    new_case_is_accepted(service, sink, provider)  # the service goes on after the retirement
    assert cli_json(config, "audit", "verify")["ok"]
    with app.sessions() as session:
        actions = list(session.execute(
            select(AuditEvent.action).where(AuditEvent.entity == "keys")).scalars())
    assert actions == ["keys.rotation_started"] * 3 + ["keys.rotation_finished"]


def test_a_value_changed_during_the_rotation_is_not_overwritten(
    app: App, provider: str,
) -> None:
    with transaction(app.sessions) as session:
        account = session.execute(select(Account).where(Account.email == provider)).scalar_one()
        account.pdf_password = "before the rotation"
        account.totp_secret = "JBSWY3DPEHPK3PXP"
    add_key(app.keys.folder)
    target = app.keys.sealing.current()
    assert target.name == "key-1.key"
    accounts = next(et for et in encrypted_tables() if et.name == "accounts")
    batch = read_batch(app.engine, accounts, app.keys.sealing, target, None, 100)
    assert {v.column for v in batch.stale} == {"pdf_password", "totp_secret"}

    with transaction(app.sessions) as session:  # the service, between the read and the write
        account = session.execute(select(Account).where(Account.email == provider)).scalar_one()
        account.pdf_password = "changed meanwhile"
    assert write_batch(app.engine, accounts, batch.stale) == 1  # the other value: written

    with app.sessions() as session:
        account = session.execute(select(Account).where(Account.email == provider)).scalar_one()
        assert account.pdf_password == "changed meanwhile"
        assert account.totp_secret == "JBSWY3DPEHPK3PXP"
    column_key = derive(read_master(app.keys.folder / "key-1.key"), "mailflow columns v1")
    with app.engine.connect() as conn:
        row = conn.execute(select(accounts.table.c.pdf_password, accounts.table.c.totp_secret)
                           .where(accounts.table.c.email == provider)).one()
    assert [unseal(column_key, base64.b64decode(v)) for v in row] == [
        b"changed meanwhile", b"JBSWY3DPEHPK3PXP"]


@pytest.fixture
def elsewhere(tmp_path: Path, db_url: str) -> Iterator[Config]:
    """An empty storage folder and database of the same kind, to restore into."""
    with new_database(kind_of(db_url), tmp_path) as url:
        folder = tmp_path / "restored"
        folder.mkdir()
        yield make_config(folder, url)


def test_a_backup_after_a_rotation_restores_with_its_retired_key(
    service: RunningService, app: App, sink: RelaySink, provider: str, config: Config,
    dermatologists: tuple[str, str], tmp_path: Path, elsewhere: Config,
) -> None:
    target = elsewhere
    number, _ack, _notification = open_case(service, sink, provider, dermatologists[0])
    assert "retired master.key" in run_cli(config, "keys", "rotate").stdout
    archive = tmp_path / "after-rotation.backup"
    backup(config, archive)
    restore(target, archive)
    assert cli_json(target, "cases", "show", number) == cli_json(config, "cases", "show", number)
    status = cli_json(target, "keys", "status")
    assert {k["name"]: k["state"] for k in status["keys"]} == {
        "key-1.key": "current", "master.key": "retired"}
    assert status["left_under_older_keys"] == 0 and status["unreadable"] == []
    assert (target.storage_dir / "keys" / "identity.key").exists()


def test_a_backup_during_a_rotation_carries_the_key_of_every_file_it_holds(
    app: App, provider: str, config: Config, tmp_path: Path, elsewhere: Config,
) -> None:
    with transaction(app.sessions) as session:
        account = session.execute(select(Account).where(Account.email == provider)).scalar_one()
        account.pdf_password = "a PDF password"
    photo = app.blobs.put(b"a synthetic photo")
    rotated: list[str] = []

    def rotate_once(_count: int) -> None:  # the rotation runs while the backup is under way
        if not rotated:
            rotated.append(rotate(app, lambda _line: None).key)

    archive = tmp_path / "during-rotation.backup"
    write_backup(config, archive, PASSPHRASE, rotate_once)
    assert rotated == ["key-1.key"]
    restore(elsewhere, archive)
    status = cli_json(elsewhere, "keys", "status")
    assert status["unreadable"] == []  # the re-sealed photo came with the new key
    assert {k["name"]: k["files"] for k in status["keys"]} == {"key-1.key": 1, "master.key": 0}
    assert (elsewhere.storage_dir / "blobs" / photo[:2] / photo[2:4] / photo).exists()
