"""Photos on their way up from the phone page (web/photos.py, workflow/uploads.py).

A photo arrives in pieces of `[uploads] chunk_bytes`, so a bad connection resumes from the
last piece the server kept. Each piece is sealed like a blob (AES-GCM, the blob key, bound to
its upload and place) in `upload_chunks`; the file name is an encrypted column. Once sent, the
pieces are joined into the message the web door spools and deleted in the same transaction;
pieces never sent are deleted after `[uploads] partial_hours`. Created by migration 0022.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from mailflow.db.models import Base, utcnow
from mailflow.db.types import EncryptedText

UPLOAD_ID_CHARS = 32


class Upload(Base):
    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(UPLOAD_ID_CHARS), primary_key=True)  # random
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))  # None: a new case
    view: Mapped[str] = mapped_column(String(40))  # the page's field it was chosen in (form_guide)
    filename: Mapped[str] = mapped_column(EncryptedText)  # a file name can name the patient
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)  # the whole file, as the phone announced it
    received: Mapped[int] = mapped_column(BigInteger, default=0)  # bytes kept so far
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class UploadChunk(Base):
    __tablename__ = "upload_chunks"

    upload_id: Mapped[str] = mapped_column(
        String(UPLOAD_ID_CHARS), ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)  # sealed: nonce || AES-GCM ciphertext
