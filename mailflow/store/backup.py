"""`mailflow backup`: the database, keys and blobs in one passphrase-encrypted archive,
consistent while the service runs (docs/decisions.md, "Backup and restore").

The archive is a tar stream inside a SealedWriter (mailflow/store/sealed_stream.py):
  manifest.json            format, schema revision, every table's columns in insert order
  db/NNN-table/NNNNNN.jsonl  rows as JSON arrays, read in ONE read-only snapshot transaction
  blobs/ab/cd/<digest>     every blob present after the snapshot began, copied as stored
  storage/keys/*, tls/*    the installation's keys (retired ones too) and TLS certificate
  storage/dkim/*           the DKIM signing key (its public half is published in DNS)
  end.json                 row and blob counts, checked by restore
Rows and blobs are copied as stored (still encrypted under the installation's keys): the
backup never decrypts PHI, and the archive needs no key but the passphrase.
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import os
import tarfile
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    LargeBinary,
    Table,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.types import TypeEngine

from mailflow import audit
from mailflow.config import Config
from mailflow.crypto.keyset import folder_lock
from mailflow.db.models import Base
from mailflow.db.session import make_engine, make_sessionmaker, transaction
from mailflow.db.types import EncryptedJSON, EncryptedText, UTCDateTime
from mailflow.store.sealed_stream import SealedWriter

ARCHIVE_FORMAT = 1
PIECE_BYTES = 4 * 1024 * 1024  # rows are held in memory this much at a time
STORAGE_FOLDERS = ("keys", "tls", "dkim")  # copied whole; blobs/ separately, nothing else
# Not ours to carry: Alembic's own row (restore migrates), APScheduler's pickled jobs (the
# scheduler's start-up sweep makes them again from the cases' due times).
SKIPPED_TABLES = frozenset({"alembic_version", "apscheduler_jobs"})

Progress = Callable[[int], None]


class BackupError(Exception):
    """The backup or restore cannot go on; the message says why and what to do."""


def _load_models() -> None:
    """Import every mailflow/<part>/models.py, so each table on Base.metadata is backed up,
    including one a new part adds (an unknown table in the database stops the backup)."""
    package = Path(__file__).resolve().parents[1]
    for path in sorted(package.glob("*/models.py")):
        importlib.import_module(f"mailflow.{path.parent.name}.models")


def tables() -> list[Table]:
    _load_models()
    return list(Base.metadata.sorted_tables)


def stored_column(column: Column[Any]) -> Column[Any]:
    """The column as stored: encrypted columns as their ciphertext text, so rows are copied
    without decrypting them (and restored without encrypting them again)."""
    kind: TypeEngine[Any] = column.type
    if isinstance(kind, EncryptedText | EncryptedJSON):
        kind = kind.impl_instance
    return Column(column.name, kind, key=column.key)


def stored_table(table: Table, metadata: Any) -> Table:
    return Table(table.name, metadata, *(stored_column(c) for c in table.columns))


def encode_value(column: Column[Any], value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat(timespec="microseconds")
    if isinstance(column.type, LargeBinary):
        return base64.b64encode(value).decode("ascii")
    return value


def decode_value(column: Column[Any], value: Any) -> Any:
    if value is None:
        return None
    if isinstance(column.type, UTCDateTime):
        return datetime.fromisoformat(value).astimezone(UTC)
    if isinstance(column.type, LargeBinary):
        return base64.b64decode(value)
    return value


def schema_revision(conn: Connection) -> str:
    rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    if len(rows) != 1:
        raise BackupError("the database has no single schema revision: run `mailflow init`")
    return str(rows[0])


def _member(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o600) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _snapshot(engine: Engine) -> Connection:
    """A connection inside one read-only transaction that sees one moment of the database.
    PostgreSQL: REPEATABLE READ. SQLite (WAL): a read transaction sees the database as of
    its first read and never blocks the service's writers."""
    if engine.dialect.name == "postgresql":
        conn = engine.connect().execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
    else:
        conn = engine.connect()
    conn.begin()
    return conn


def _check_tables_known(conn: Connection) -> None:
    present = set(inspect(conn).get_table_names()) - SKIPPED_TABLES
    unknown = present - {t.name for t in tables()}
    if unknown:
        raise BackupError(f"the database has tables this mailflow does not know: "
                          f"{', '.join(sorted(unknown))}: back up with the matching version")


def _table_pieces(conn: Connection, table: Table) -> Iterator[tuple[bytes, int]]:
    """The table's rows in primary-key order, as JSON lines in pieces of about PIECE_BYTES."""
    raw = stored_table(table, Base.metadata.__class__())
    query = select(raw).order_by(*(raw.c[c.key] for c in table.primary_key.columns))
    columns = list(raw.columns)
    buffer, count = io.BytesIO(), 0
    # a row of blob_chunks holds up to [storage] chunk_bytes (64 MiB at most): fetch those
    # two at a time, other tables' small rows five hundred at a time
    batch = 2 if table.name == "blob_chunks" else 500
    result = conn.execution_options(stream_results=True, yield_per=batch).execute(query)
    for row in result:
        values = [encode_value(c, v) for c, v in zip(columns, row, strict=True)]
        buffer.write(json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode())
        buffer.write(b"\n")
        count += 1
        if buffer.tell() >= PIECE_BYTES:
            yield buffer.getvalue(), count
            buffer, count = io.BytesIO(), 0
    if count:
        yield buffer.getvalue(), count


def _blob_files(blob_root: Path) -> Iterator[Path]:
    if not blob_root.is_dir():
        return
    for first in sorted(blob_root.iterdir()):
        for second in sorted(first.iterdir()) if first.is_dir() else ():
            for path in sorted(second.iterdir()) if second.is_dir() else ():
                if len(path.name) == 64 and not path.name.startswith("."):
                    yield path


def _write_rows(tar: tarfile.TarFile, conn: Connection, progress: Progress) -> dict[str, int]:
    counts: dict[str, int] = {}
    for number, table in enumerate(tables(), start=1):
        counts[table.name] = 0
        for piece_number, (data, rows) in enumerate(_table_pieces(conn, table), start=1):
            _member(tar, f"db/{number:03d}-{table.name}/{piece_number:06d}.jsonl", data)
            counts[table.name] += rows
            progress(rows)
    return counts


def _write_storage(tar: tarfile.TarFile, storage: Path) -> None:
    """The keys (retired ones too), the TLS certificate and the DKIM key (a new one would need
    a new DNS record); lock files are not carried. Under the keys' folder lock, so a key being
    retired meanwhile is copied once, not missed."""
    keys = storage / "keys"
    with folder_lock(keys, shared=True) if keys.is_dir() else nullcontext():
        for folder in STORAGE_FOLDERS:
            base = storage / folder
            for path in sorted(base.rglob("*")) if base.is_dir() else ():
                if path.is_file() and not path.name.endswith(".lock"):
                    name = f"storage/{path.relative_to(storage).as_posix()}"
                    _member(tar, name, path.read_bytes())


def _write_blobs(tar: tarfile.TarFile, storage: Path, progress: Progress) -> int:
    count = 0
    for path in _blob_files(storage / "blobs"):
        info = tar.gettarinfo(str(path), arcname=f"blobs/{path.relative_to(storage / 'blobs')}")
        info.mode, info.uid, info.gid, info.uname, info.gname = 0o600, 0, 0, "", ""
        with path.open("rb") as fh:
            tar.addfile(info, fh)
        count += 1
        progress(1)
    return count


def count_work(config: Config) -> int:
    """Rows plus blobs, for the progress bar's total (an estimate: the service keeps going)."""
    engine = make_engine(config.database_url)
    try:
        with engine.connect() as conn:
            rows = sum(conn.execute(select(func.count()).select_from(t)).scalar_one()
                       for t in tables())
    finally:
        engine.dispose()
    return rows + sum(1 for _ in _blob_files(config.storage_dir / "blobs"))


def write_backup(config: Config, out: Path, passphrase: str, progress: Progress) -> dict[str, Any]:
    """Write the archive to `out` (through a temporary name, so a failed backup leaves no
    file that looks whole). Returns the end record (counts)."""
    if out.exists():
        raise BackupError(f"{out} already exists: choose a new file name")
    partial = out.with_name(f".{out.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    engine = make_engine(config.database_url)
    try:
        with os.fdopen(fd, "wb") as fh:
            sealed = SealedWriter(fh, passphrase)
            end = _write_archive(sealed, engine, config.storage_dir, progress)
            sealed.close()
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, out)
        _audit_backup(engine, out, end)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        engine.dispose()
    return end


def _audit_backup(engine: Engine, out: Path, end: dict[str, Any]) -> None:
    """A backup reads every case: the audit log says when, and how much (no PHI)."""
    with transaction(make_sessionmaker(engine)) as session:
        audit.record(session, "backup.made", actor="cli", entity="backup", entity_id=out.name[:64],
                     detail={"rows": sum(end["rows"].values()), "blobs": end["blobs"]})


def _write_archive(sealed: SealedWriter, engine: Engine, storage: Path,
                   progress: Progress) -> dict[str, Any]:
    with tarfile.open(fileobj=sealed, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        conn = _snapshot(engine)
        try:
            revision = schema_revision(conn)  # the snapshot starts here
            _check_tables_known(conn)
            manifest = {
                "format": ARCHIVE_FORMAT,
                "schema_revision": revision,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "source_database": engine.dialect.name,
                "tables": [{"name": t.name, "columns": [c.name for c in t.columns]}
                           for t in tables()],
            }
            _member(tar, "manifest.json", json.dumps(manifest, indent=1).encode())
            counts = _write_rows(tar, conn, progress)
        finally:
            conn.rollback()
            conn.close()
        # after the snapshot: every blob its rows name is on disk (a blob is written before
        # the row naming it commits, and never deleted); later blobs are harmless extras
        blobs = _write_blobs(tar, storage, progress)
        # the keys last: a row or blob copied above may have been sealed (or re-sealed by a
        # key rotation) under a key made after the backup began; keys are only ever added
        _write_storage(tar, storage)
        end = {"rows": counts, "blobs": blobs}
        _member(tar, "end.json", json.dumps(end).encode())
    return end
