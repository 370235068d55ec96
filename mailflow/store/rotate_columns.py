"""Re-encrypting the database's encrypted columns under the current key, while the service runs.

Every EncryptedText/EncryptedJSON column of every table is found from the models (a new one
is carried without a change here). Rows are read a batch at a time in primary-key order with
the encrypted columns as their stored text; a value under an older key is opened and sealed
again, and written with a compare-and-swap on the stored text (`... WHERE id = :id AND col =
:old`): a value the service changed meanwhile is newer, already under the current key, and is
never overwritten. No row is locked while values are worked on, on SQLite or PostgreSQL.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from sqlalchemy import Column, Engine, MetaData, Table, func, select, update

from mailflow.crypto.keys import seal
from mailflow.crypto.keyset import KeySet, SealingKey
from mailflow.db.session import WRITE
from mailflow.db.types import EncryptedJSON, EncryptedText
from mailflow.store.backup import stored_table, tables


class RotationError(Exception):
    """The rotation cannot go on; the message says why."""


@dataclass(frozen=True)
class EncryptedTable:
    table: Table  # as stored: the encrypted columns are their text
    pk: Column[Any]
    columns: tuple[str, ...]  # the encrypted columns' keys in `table.c`

    @property
    def name(self) -> str:
        return self.table.name


def encrypted_tables() -> list[EncryptedTable]:
    """Every table with an encrypted column, from the models."""
    found = []
    metadata = MetaData()
    for table in tables():
        keys = tuple(c.key for c in table.columns
                     if isinstance(c.type, EncryptedText | EncryptedJSON))
        if not keys:
            continue
        if len(table.primary_key.columns) != 1:
            raise RotationError(f"table {table.name} has encrypted columns but no single-column "
                                "primary key: the rotation cannot address its rows")
        raw = stored_table(table, metadata)
        found.append(EncryptedTable(raw, raw.c[table.primary_key.columns[0].key], keys))
    return found


@dataclass(frozen=True)
class StaleValue:
    """One stored value under an older key, and the same value sealed under the current."""

    row: Any
    column: str
    old: str
    new: str
    key: str  # the old key's file name


@dataclass
class Batch:
    rows: int = 0
    last: Any = None  # the last primary key read: the next batch starts after it
    stale: list[StaleValue] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # "table id column", no values
    under: dict[str, int] = field(default_factory=dict)  # key name -> values


def count_rows(engine: Engine, et: EncryptedTable) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(et.table)).scalar_one())


def read_batch(engine: Engine, et: EncryptedTable, keys: KeySet, target: SealingKey,
               after: Any, limit: int) -> Batch:
    """The next `limit` rows after `after`: which key each value is under, and the values
    to re-encrypt (sealed again here, outside any write transaction)."""
    query = select(et.pk, *(et.table.c[c] for c in et.columns)).order_by(et.pk).limit(limit)
    if after is not None:
        query = query.where(et.pk > after)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    batch = Batch(rows=len(rows), last=rows[-1][0] if rows else after)
    for row in rows:
        for name, stored in zip(et.columns, row[1:], strict=True):
            if stored is None:
                continue
            try:
                plain, key = keys.open("column", base64.b64decode(stored))
            except (InvalidTag, ValueError):
                batch.unreadable.append(f"{et.name} {row[0]} {name}")
                continue
            batch.under[key.name] = batch.under.get(key.name, 0) + 1
            if key.name != target.name:
                new = base64.b64encode(seal(target.column_key, plain)).decode("ascii")
                batch.stale.append(StaleValue(row[0], name, stored, new, key.name))
    return batch


def write_batch(engine: Engine, et: EncryptedTable, stale: list[StaleValue]) -> int:
    """Write the re-encrypted values where the stored one is still the one read (one short
    transaction). Returns how many were written; the others were changed meanwhile."""
    if not stale:
        return 0
    written = 0
    with engine.connect().execution_options(**{WRITE: True}) as conn, conn.begin():
        for value in stale:
            column = et.table.c[value.column]
            result = conn.execute(
                update(et.table).where(et.pk == value.row, column == value.old)
                .values({value.column: value.new})
            )
            written += result.rowcount
    return written


def batches(engine: Engine, et: EncryptedTable, keys: KeySet, target: SealingKey,
            limit: int) -> Iterator[Batch]:
    after = None
    while True:
        batch = read_batch(engine, et, keys, target, after, limit)
        if not batch.rows:
            return
        yield batch
        after = batch.last
