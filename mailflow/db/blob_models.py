"""The blob tables, used when `[storage] blobs = "database"` (store/db_blobs.py).

A blob is stored exactly as the file store writes it (nonce || AES-GCM ciphertext, its keyed
name bound in), cut into rows of at most `[storage] chunk_bytes`, so no single value is large.
`blobs` has one row per whole blob, written in the same transaction after its chunks: a blob
is there when its row is. Created by migration 0019. No PHI in clear.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from mailflow.db.models import Base

NAME_CHARS = 64  # a hex SHA-256


class BlobRow(Base):
    __tablename__ = "blobs"

    name: Mapped[str] = mapped_column(String(NAME_CHARS), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)  # sealed bytes
    chunks: Mapped[int] = mapped_column(Integer)
    # last written or used (the storing process's clock, as a file's mtime): the retention
    # purge leaves a blob used since it decided to delete it
    used_at: Mapped[float] = mapped_column(Float)


class BlobChunk(Base):
    __tablename__ = "blob_chunks"

    name: Mapped[str] = mapped_column(String(NAME_CHARS), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
