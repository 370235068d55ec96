"""Photos sent from the phone page in pieces, so a bad connection resumes instead of starting
over: an upload is announced (name, type, size), its pieces come in order, each sealed like a
blob, and the server says how many bytes it kept. A piece sent again (its answer was lost) is
taken as already kept. What `phone_cases.send` joins and spools; what nobody sent expires.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mailflow.app import App
from mailflow.db.models import Account, utcnow
from mailflow.db.session import ROW_LOCK
from mailflow.db.upload_models import Upload, UploadChunk
from mailflow.outbound.form_guide import PHOTO_FIELD


class UploadRefused(Exception):
    """Said to the provider as it is: plain words, no internals."""


# one send is one email, no larger than the SMTP door takes ([smtp] max_message_bytes)
TOO_BIG = "These photos are too large to send together. Send fewer at a time."


@dataclass(frozen=True)
class Progress:
    id: str
    size: int
    received: int

    @property
    def done(self) -> bool:
        return self.received >= self.size


def _associated(upload_id: str, seq: int) -> bytes:
    # a piece opens only as this upload's piece at this place: none can be swapped or moved
    return f"upload:{upload_id}:{seq}".encode()


def forget_expired(session: Session) -> int:
    """Uploads nobody sent in time, with their pieces (cascade): the table stays small without
    a sweeper, as web sessions do."""
    gone = session.execute(select(Upload.id).where(Upload.expires_at < utcnow())).scalars().all()
    if gone:
        session.execute(delete(UploadChunk).where(UploadChunk.upload_id.in_(gone)))
        session.execute(delete(Upload).where(Upload.id.in_(gone)))
    return len(gone)


def start(app: App, session: Session, account: Account, case_id: int | None, field: str,
          filename: str, content_type: str, size: int) -> Progress:
    cfg = app.config.uploads
    if field not in PHOTO_FIELD:
        raise UploadRefused("That photo field is not on this page.")
    if size <= 0:
        raise UploadRefused("That file is empty.")
    if size > cfg.max_file_bytes:
        raise UploadRefused(f"That file is larger than {cfg.max_file_bytes // (1024 * 1024)} MB."
                            " Take the photo again, or choose a smaller one.")
    forget_expired(session)
    pending = session.execute(select(Upload.size).where(Upload.account_id == account.id)
                              ).scalars().all()
    # a row costs at least a piece: many tiny uploads are bounded too
    if sum(max(n, cfg.chunk_bytes) for n in [*pending, size]) > cfg.max_pending_bytes:
        raise UploadRefused("Too many photos from your account are waiting to be sent. Send "
                            "the ones you chose, or try again later.")
    upload = Upload(id=secrets.token_hex(16), account_id=account.id, case_id=case_id,
                    view=PHOTO_FIELD[field].name, filename=_filename(filename),
                    content_type=_content_type(content_type), size=size, received=0,
                    expires_at=utcnow() + timedelta(hours=cfg.partial_hours))
    session.add(upload)
    session.flush()
    return Progress(upload.id, size, 0)


def _filename(value: str) -> str:
    """The phone's name for the file, printable only: it becomes a MIME parameter."""
    printable = "".join(c for c in value if c.isprintable()).strip()[:255]
    return printable or "photo.jpg"


def _content_type(value: str) -> str:
    kind = value.strip().lower()[:100]
    maintype, _, subtype = kind.partition("/")
    ok = maintype.isascii() and subtype and all(c.isalnum() or c in "-.+" for c in subtype)
    return kind if ok and maintype.isalpha() else "application/octet-stream"


def find(session: Session, account: Account, upload_id: str, lock: bool = False) -> Upload:
    """The account's own upload, not expired; anyone else's is as good as missing."""
    query = select(Upload).where(Upload.id == upload_id[:64], Upload.account_id == account.id,
                                 Upload.expires_at >= utcnow())
    locked = query.with_for_update(**ROW_LOCK) if lock else query
    upload = session.execute(locked).scalar_one_or_none()
    if upload is None:
        raise UploadRefused("That upload is no longer here. Choose the photo again.")
    return upload


def add_piece(app: App, session: Session, account: Account, upload_id: str, offset: int,
              data: bytes) -> Progress:
    """One piece at `offset`. A piece the server already kept (the phone did not hear the
    answer) changes nothing; a gap or a piece of the wrong size is refused."""
    upload = find(session, account, upload_id, lock=True)
    step = app.config.uploads.chunk_bytes
    if offset < upload.received:
        return Progress(upload.id, upload.size, upload.received)  # kept already: go on from here
    end = offset + len(data)
    if offset != upload.received or offset % step or not data or end > upload.size:
        raise UploadRefused("That piece of the photo did not fit. The page starts it again.")
    if len(data) != step and end != upload.size:
        raise UploadRefused("That piece of the photo did not fit. The page starts it again.")
    seq = offset // step
    session.add(UploadChunk(upload_id=upload.id, seq=seq,
                            data=app.blobs.keys.seal("blob", data, _associated(upload.id, seq))))
    upload.received = end
    return Progress(upload.id, upload.size, upload.received)


def progress(session: Session, account: Account, upload_id: str) -> Progress:
    upload = find(session, account, upload_id)
    return Progress(upload.id, upload.size, upload.received)


@dataclass(frozen=True)
class Photo:
    filename: str
    content_type: str
    caption: str
    data: bytes


def take(app: App, session: Session, account: Account, upload_ids: list[str],
         case_id: int | None) -> list[Photo]:
    """The finished uploads, joined, and deleted with their pieces in the caller's transaction
    (the one that spools them): sent once, never twice."""
    photos = []
    chosen = [find(session, account, i, lock=True) for i in dict.fromkeys(upload_ids)]
    # base64 makes 4 bytes of 3: what can never fit in one email is not even joined
    if sum(u.size for u in chosen) * 4 // 3 > app.config.smtp.max_message_bytes:
        raise UploadRefused(TOO_BIG)
    for upload in chosen:
        if upload.case_id != case_id:
            raise UploadRefused("That photo was chosen for another case. Choose it again here.")
        if upload.received < upload.size:
            raise UploadRefused("A photo has not finished sending. Wait for it, then send.")
        pieces = session.execute(select(UploadChunk).where(UploadChunk.upload_id == upload.id)
                                 .order_by(UploadChunk.seq)).scalars().all()
        data = b"".join(app.blobs.keys.open("blob", p.data, _associated(upload.id, p.seq))[0]
                        for p in pieces)
        if len(data) != upload.size:
            raise UploadRefused("A photo arrived incomplete. Choose it again.")
        field = PHOTO_FIELD.get(upload.view, PHOTO_FIELD["additional"])
        photos.append(Photo(upload.filename, upload.content_type, field.caption, data))
        session.execute(delete(UploadChunk).where(UploadChunk.upload_id == upload.id))
        session.delete(upload)
    return photos
