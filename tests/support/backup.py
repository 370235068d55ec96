"""Backups and restores through the real command line, and the empty database a restore
goes into (used by the backup and key-rotation tests)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mailflow.config import Config
from tests.conftest import PG_URL
from tests.support.cli import run_cli

PASSPHRASE = "a synthetic test passphrase"


@contextmanager
def new_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """An empty database: a new SQLite file, or a new schema on PostgreSQL (as db_url)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path}/restored-{uuid.uuid4().hex[:8]}.db"
        return
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    plain = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def kind_of(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgres"


def backup(config: Config, archive: Path, passphrase: str = PASSPHRASE) -> str:
    return run_cli(config, "backup", "--passphrase-stdin", str(archive),
                   input=passphrase + "\n").stdout


def restore(config: Config, archive: Path, passphrase: str = PASSPHRASE, check: bool = True):  # type: ignore[no-untyped-def]
    return run_cli(config, "restore", "--passphrase-stdin", str(archive),
                   input=passphrase + "\n", check=check)
