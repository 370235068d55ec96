"""`mailflow restore`: a backup (mailflow/store/backup.py) into an EMPTY storage folder and an
EMPTY database, giving a working installation (same keys, same rows, same blobs).

Two passes over the archive: the first checks everything (passphrase, every chunk's
authentication, the schema revision, the counts) and writes nothing; only then does the
second write. The database part is one transaction (migration included); if anything fails
the transaction rolls back and the files written are removed, so nothing is half restored.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData, Table, func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.config import Config
from mailflow.db.session import MIGRATIONS, WRITE, make_engine
from mailflow.store.backup import (
    ARCHIVE_FORMAT,
    STORAGE_FOLDERS,
    BackupError,
    Progress,
    decode_value,
    stored_table,
    tables,
)
from mailflow.store.sealed_stream import SealedReader

ProgressBar = Callable[[str, int], AbstractContextManager[Progress]]
_DB_MEMBER = re.compile(r"db/(\d{3})-([a-z0-9_]+)/(\d{6})\.jsonl")
_BLOB_MEMBER = re.compile(r"blobs/([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{64})")
# keys/retired/ holds keys a rotation retired (crypto/keyset.py): they open old data
_STORAGE_MEMBER = re.compile(rf"storage/({'|'.join(STORAGE_FOLDERS)})/(retired/)?[A-Za-z0-9_.-]+")
_BLOB_WRITE = 1024 * 1024


def _alembic(conn: Connection | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def code_revision() -> str:
    return str(ScriptDirectory.from_config(_alembic()).get_current_head())


def _sqlite_files(config: Config) -> set[Path]:
    url = make_url(config.database_url)
    if url.get_backend_name() != "sqlite" or not url.database:
        return set()
    db = Path(url.database).resolve()
    return {db, *(db.with_name(db.name + s) for s in ("-wal", "-shm", "-journal"))}


def check_storage_empty(config: Config) -> None:
    storage = config.storage_dir
    if not storage.exists():
        return
    if not storage.is_dir():
        raise BackupError(f"{storage} is not a folder")
    ours = _sqlite_files(config)
    extra = [p.name for p in storage.iterdir() if p.resolve() not in ours]
    if extra:
        raise BackupError(
            f"the storage folder {storage} is not empty ({', '.join(sorted(extra)[:5])}): "
            "restore only into a new, empty folder (do not run `mailflow init` first)"
        )


def check_database_empty(engine: Engine) -> None:
    with engine.connect() as conn:
        names = inspect(conn).get_table_names()
    if names:
        raise BackupError(
            f"the database already has tables ({', '.join(sorted(names)[:5])}): restore only "
            "into a new, empty database (do not run `mailflow init` first)"
        )


class _Checker:
    """Pass one: reads every member, writes nothing."""

    def __init__(self) -> None:
        self.manifest: dict[str, Any] | None = None
        self.rows: dict[str, int] = {}
        self.blobs = 0
        self.ended = False

    def on_manifest(self, manifest: dict[str, Any]) -> None:
        if manifest.get("format") != ARCHIVE_FORMAT:
            raise BackupError(f"backup format {manifest.get('format')} is not known here")
        ours = code_revision()
        if manifest.get("schema_revision") != ours:
            raise BackupError(
                f"this backup is of database schema revision {manifest.get('schema_revision')}, "
                f"this mailflow's is {ours}: restore with the mailflow version that made the "
                "backup (then upgrade it with `mailflow init`)"
            )
        expected = [{"name": t.name, "columns": [c.name for c in t.columns]} for t in tables()]
        if manifest.get("tables") != expected:
            raise BackupError("the backup's tables do not match this mailflow's schema")
        self.manifest = manifest

    def on_storage(self, name: str, data: bytes) -> None:
        pass

    def on_rows(self, table: Table, rows: list[list[Any]]) -> None:
        self.rows[table.name] = self.rows.get(table.name, 0) + len(rows)

    def on_blob(self, name: str, member: IO[bytes]) -> None:
        while member.read(_BLOB_WRITE):
            pass
        self.blobs += 1

    def on_end(self, end: dict[str, Any]) -> None:
        seen = {t.name: self.rows.get(t.name, 0) for t in tables()}
        if end.get("rows") != seen or end.get("blobs") != self.blobs:
            raise BackupError("the backup is incomplete: its counts do not match its contents")
        self.ended = True


class _Loader(_Checker):
    """Pass two: writes the storage folder and, in one transaction, the database."""

    def __init__(self, config: Config, conn: Connection) -> None:
        super().__init__()
        self.storage = config.storage_dir
        self.conn = conn
        self.metadata = MetaData()

    def on_manifest(self, manifest: dict[str, Any]) -> None:
        super().on_manifest(manifest)
        self.storage.mkdir(parents=True, exist_ok=True)
        self.storage.chmod(0o700)
        (self.storage / "blobs").mkdir(mode=0o700)
        command.upgrade(_alembic(self.conn), "head")
        for table in reversed(tables()):  # rows the migrations seed (the audit head)
            self.conn.execute(table.delete())

    def _write(self, relative: str, chunks: Any) -> None:
        path = self.storage / relative
        for parent in reversed(path.relative_to(self.storage).parents[:-1]):
            folder = self.storage / parent
            if not folder.exists():
                folder.mkdir(mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())

    def on_storage(self, name: str, data: bytes) -> None:
        self._write(name.removeprefix("storage/"), [data])

    def on_rows(self, table: Table, rows: list[list[Any]]) -> None:
        super().on_rows(table, rows)
        raw = stored_table(table, self.metadata) if table.name not in self.metadata.tables \
            else self.metadata.tables[table.name]
        columns = list(raw.columns)
        self.conn.execute(raw.insert(), [
            {c.key: decode_value(c, v) for c, v in zip(columns, row, strict=True)} for row in rows
        ])

    def on_blob(self, name: str, member: IO[bytes]) -> None:
        self._write(name, iter(lambda: member.read(_BLOB_WRITE), b""))
        self.blobs += 1

    def on_end(self, end: dict[str, Any]) -> None:
        super().on_end(end)
        if self.conn.dialect.name == "postgresql":
            _advance_sequences(self.conn)
        assert self.manifest is not None
        with Session(bind=self.conn) as session:  # inside the restore's one transaction
            audit.record(session, "backup.restored", actor="cli", entity="backup", detail={
                "backup_created_at": self.manifest["created_at"],
                "source_database": self.manifest["source_database"],
                "rows": sum(self.rows.values()), "blobs": self.blobs,
            })


def _advance_sequences(conn: Connection) -> None:
    """Rows came with their ids: move each id sequence past them, or the next insert fails."""
    for table in tables():
        pk = list(table.primary_key.columns)
        if len(pk) != 1 or pk[0].autoincrement is False or pk[0].type.python_type is not int:
            continue
        highest = conn.execute(select(func.max(pk[0])).select_from(table)).scalar()
        if highest is not None:
            conn.execute(text("SELECT setval(pg_get_serial_sequence(:t, :c), :v)"),
                         {"t": table.name, "c": pk[0].name, "v": highest})


def _walk(reader: SealedReader, handler: _Checker) -> None:
    by_name = {t.name: t for t in tables()}
    with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
        for member in tar:
            name = member.name
            if not member.isfile() or handler.ended:
                raise BackupError(f"unexpected entry in the backup: {name}")
            if handler.manifest is None and name != "manifest.json":
                raise BackupError("the backup does not start with its manifest")
            data = tar.extractfile(member)
            assert data is not None
            if name == "manifest.json":
                handler.on_manifest(json.loads(data.read()))
            elif name == "end.json":
                handler.on_end(json.loads(data.read()))
            elif _STORAGE_MEMBER.fullmatch(name):
                handler.on_storage(name, data.read())
            elif (db := _DB_MEMBER.fullmatch(name)) and db.group(2) in by_name:
                rows = [json.loads(line) for line in data.read().splitlines() if line]
                handler.on_rows(by_name[db.group(2)], rows)
            elif (blob := _BLOB_MEMBER.fullmatch(name)) and blob.group(3)[:4] == \
                    blob.group(1) + blob.group(2):
                handler.on_blob(name, data)
            else:
                raise BackupError(f"unexpected entry in the backup: {name}")
    reader.drain()
    if not handler.ended:
        raise BackupError("the backup is incomplete (it has no end record)")


def _pass(archive: Path, passphrase: str, handler: _Checker, bar: ProgressBar,
          label: str) -> None:
    with bar(label, archive.stat().st_size) as progress, archive.open("rb") as fh:
        _walk(SealedReader(fh, passphrase, on_read=progress), handler)


def restore(config: Config, archive: Path, passphrase: str, bar: ProgressBar) -> dict[str, Any]:
    """Check the whole archive, then restore it. Returns the manifest."""
    storage_existed = config.storage_dir.exists()
    check_storage_empty(config)
    for path in _sqlite_files(config):  # SQLite makes the file, not its folder (by default var/)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    engine = make_engine(config.database_url)
    try:
        check_database_empty(engine)
        checker = _Checker()
        _pass(archive, passphrase, checker, bar, "checking")
        try:
            with engine.connect().execution_options(**{WRITE: True}) as conn, conn.begin():
                _pass(archive, passphrase, _Loader(config, conn), bar, "restoring")
        except BaseException:
            _remove_written(config, storage_existed)
            raise
    finally:
        engine.dispose()
    assert checker.manifest is not None
    return {**checker.manifest, "rows": checker.rows, "blobs": checker.blobs}


def _remove_written(config: Config, storage_existed: bool) -> None:
    storage = config.storage_dir
    if not storage.exists():
        return
    ours = _sqlite_files(config)
    for path in storage.iterdir():
        if path.resolve() in ours:
            continue
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    if not storage_existed and not any(storage.iterdir()):
        storage.rmdir()
