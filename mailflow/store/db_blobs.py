"""The blob store in the database (`[storage] blobs = "database"`): the same blobs, sealed and
named exactly as the file store seals and names them (store/blobs.py), kept in rows of at most
`chunk_bytes` (db/blob_models.py), so every machine that reaches the database reaches them.

A blob is written in one transaction, its chunks first and then its `blobs` row; it is there
once that commits. Reading streams the chunks one row at a time, so no single value is large;
a whole blob is in memory only as the plaintext `get` returns (as with a file). The retention
purge and a rotation's reseal lock the `blobs` row (PostgreSQL; SQLite has one writer), so a
`put` of the same bytes meanwhile either marks the row as used before the purge looks, or
writes it afresh after.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from cryptography.exceptions import InvalidTag
from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailflow.crypto.keyset import KeySet, SealingKey
from mailflow.db.blob_models import BlobChunk, BlobRow
from mailflow.db.session import WRITE
from mailflow.store.blobs import (
    BlobError,
    BlobUse,
    Resealed,
    blob_name,
    check_name,
    sealed_anew,
)

LIST_PAGE = 1000  # blob names read at once by `listing`


class DatabaseBlobStore:
    def __init__(self, engine: Engine, keys: KeySet, name_key: bytes, chunk_bytes: int) -> None:
        self.engine = engine
        self.keys = keys
        self._name_key = name_key
        self.chunk_bytes = chunk_bytes

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(**{WRITE: True}) as conn, conn.begin():
            yield conn

    def put(self, data: bytes, session: Session | None = None) -> str:
        """Store the bytes; with `session`, in its transaction (SQLite has one writer: a
        second connection would wait for the caller's own transaction), so the blob commits
        or rolls back with the row naming it."""
        digest = blob_name(self._name_key, data)
        if session is not None:
            return self._put(session.connection(), data, digest)
        with self._writing() as conn:
            return self._put(conn, data, digest)

    def _put(self, conn: Connection, data: bytes, digest: str) -> str:
        if _touch(conn, digest):  # already there: marked as just used, so a purge leaves it
            return digest
        sealed = memoryview(self.keys.seal("blob", data, digest.encode()))
        try:
            with conn.begin_nested():
                self._insert(conn, digest, _slices(sealed, self.chunk_bytes), time.time())
        except IntegrityError:  # the same bytes stored by another process meanwhile
            _touch(conn, digest)
        return digest

    def write_sealed(self, digest: str, chunks: Iterable[bytes], used_at: float) -> None:
        """Store a blob's sealed bytes as given (a copy between stores), in one transaction."""
        check_name(digest)
        with self._writing() as conn:
            self._insert(conn, digest, _rechunk(chunks, self.chunk_bytes), used_at)

    def _insert(self, conn: Connection, digest: str, chunks: Iterable[bytes],
                used_at: float) -> None:
        size = count = 0
        for count, chunk in enumerate(chunks, start=1):
            conn.execute(insert(BlobChunk).values(name=digest, seq=count - 1, data=chunk))
            size += len(chunk)
        conn.execute(insert(BlobRow).values(name=digest, size=size, chunks=count,
                                            used_at=used_at))

    def sealed_chunks(self, digest: str) -> Iterator[bytes]:
        """The sealed bytes, a row at a time (one statement: one consistent view)."""
        check_name(digest)
        query = select(BlobChunk.data).where(BlobChunk.name == digest).order_by(BlobChunk.seq)
        with self.engine.connect() as conn:
            rows = conn.execution_options(stream_results=True, yield_per=1).execute(query)
            for (data,) in rows:
                yield bytes(data)

    def _sealed(self, digest: str) -> memoryview | None:
        buffer = bytearray()
        for chunk in self.sealed_chunks(digest):
            buffer += chunk
        # a view, not a copy: AES-GCM reads any buffer (a 40 MB message is held once sealed)
        return memoryview(buffer) if buffer else None

    def get(self, digest: str) -> bytes:
        sealed = self._sealed(digest)
        if sealed is None:
            raise BlobError(f"blob {digest[:12]}… is missing")
        try:
            return self.keys.open("blob", sealed, digest.encode(), what=f"blob {digest[:12]}")[0]
        except InvalidTag as exc:
            raise BlobError(f"blob {digest[:12]}… failed its integrity check") from exc

    def exists(self, digest: str) -> bool:
        check_name(digest)
        with self.engine.connect() as conn:
            return conn.scalar(select(BlobRow.name).where(BlobRow.name == digest)) is not None

    def used_at(self, digest: str) -> float | None:
        with self.engine.connect() as conn:
            return conn.scalar(select(BlobRow.used_at).where(BlobRow.name == digest))

    def discard(self, digest: str, used_before: float) -> bool:
        """Delete a blob no row needs any more, unless it was used at or after `used_before`."""
        check_name(digest)
        with self._writing() as conn:
            gone = conn.execute(delete(BlobRow).where(BlobRow.name == digest,
                                                      BlobRow.used_at < used_before))
            if not gone.rowcount:
                return False
            conn.execute(delete(BlobChunk).where(BlobChunk.name == digest))
            return True

    def remove(self, digest: str) -> None:
        """Delete a blob whatever its use (`mailflow blobs migrate --remove-source`)."""
        self.discard(digest, float("inf"))

    def opening_key(self, digest: str) -> SealingKey | None:
        sealed = self._sealed(digest)
        if sealed is None:
            return None
        try:
            return self.keys.open("blob", sealed, digest.encode())[1]
        except InvalidTag:
            return None

    def reseal(self, digest: str) -> Resealed:
        """Seal the blob again under the current key, if it is not already; its time of last
        use is kept. The row is locked first, so a purge meanwhile waits or has won."""
        sealed = self._sealed(digest)
        if sealed is None:
            return Resealed.GONE
        resealed = sealed_anew(self.keys, sealed, digest)
        if isinstance(resealed, Resealed):
            return resealed
        fresh = memoryview(resealed)
        with self._writing() as conn:
            locked = conn.execute(select(BlobRow.name).where(BlobRow.name == digest)
                                  .with_for_update()).scalar()
            if locked is None:
                return Resealed.GONE
            conn.execute(delete(BlobChunk).where(BlobChunk.name == digest))
            count = 0
            for count, chunk in enumerate(_slices(fresh, self.chunk_bytes), start=1):
                conn.execute(insert(BlobChunk).values(name=digest, seq=count - 1, data=chunk))
            conn.execute(update(BlobRow).where(BlobRow.name == digest)
                         .values(size=len(fresh), chunks=count))
        return Resealed.RESEALED

    def files(self) -> Iterator[str]:
        """Every blob's name, in order (read in pages, so the listing is never held whole)."""
        for use in self.listing():
            yield use.name

    def listing(self) -> Iterator[BlobUse]:
        """Every blob with its `used_at`, in name order, a page at a time (each page its own
        short read: no transaction is held open over a store of millions)."""
        after = ""
        while True:
            with self.engine.connect() as conn:
                page = conn.execute(select(BlobRow.name, BlobRow.used_at)
                                    .where(BlobRow.name > after)
                                    .order_by(BlobRow.name).limit(LIST_PAGE)).all()
            yield from (BlobUse(name, used_at) for name, used_at in page)
            if len(page) < LIST_PAGE:
                return
            after = page[-1][0]

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(BlobRow)) or 0)

    def remove_abandoned_reseals(self) -> int:
        return 0  # a reseal is one transaction: a stopped one leaves nothing behind

    def sweep_abandoned(self, used_before: float, dry_run: bool = False) -> int:
        return 0  # a put is one transaction: a stopped one leaves nothing behind


def _touch(conn: Connection, digest: str) -> bool:
    done = conn.execute(update(BlobRow).where(BlobRow.name == digest).values(used_at=time.time()))
    return bool(done.rowcount)


def _slices(data: memoryview, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield bytes(data[start:start + size])


def _rechunk(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """The same bytes in pieces of exactly `size` (the last shorter)."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)
