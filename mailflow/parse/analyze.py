"""Everything CPU-heavy about one inbound message, in one pure call.

The worker runs this in a separate process (bytes in, picklable values out), so MIME parsing
and photo decoding never hold up the SMTP event loop or the database thread.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from mailflow.parse import budget
from mailflow.parse.auto import automatic_reason
from mailflow.parse.fingerprint import fingerprint
from mailflow.parse.images import process_image
from mailflow.parse.mime import parse_message
from mailflow.parse.reply import strip_quoted
from mailflow.parse.types import (
    Attachment,
    ImageLimits,
    MimeLimits,
    ParsedMessage,
    ParseRejected,
    ProcessedImage,
)

# Inline images this small are signature logos and icons, not clinical photos.
MIN_INLINE_PHOTO_PIXELS = 300 * 300
PHOTO_THREADS = 2  # the machine's cores; more only adds memory


@dataclass(frozen=True)
class Photo:
    filename: str
    description: str
    original: bytes
    image: ProcessedImage


@dataclass(frozen=True)
class StoredPhoto:
    """A Photo once its bytes are in the blob store: names and facts only, so a large case
    never travels between processes (or sits in the worker's memory) more than once."""

    filename: str
    description: str
    original_sha: str
    clean_sha: str
    clean_content_type: str
    review_sha: str
    thumbnail_sha: str
    format: str
    width: int
    height: int
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class RefusedFile:
    filename: str
    reason: str


@dataclass(frozen=True)
class Analysis:
    message: ParsedMessage | None  # None when the message could not be read at all
    rejected_code: str = ""
    rejected_reason: str = ""
    automatic: str = ""  # why this is an automatic message, "" for a person's
    body: str = ""  # the new text: quoted original and signature removed
    photos: tuple[Photo, ...] | tuple[StoredPhoto, ...] = ()
    fingerprint: str = ""  # once-only processing (parse.fingerprint)
    refused: tuple[RefusedFile, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.body.strip() and not self.photos and not self.refused


def analyze(
    raw: bytes,
    envelope_from: str,
    mime_limits: MimeLimits = MimeLimits(),
    image_limits: ImageLimits = ImageLimits(),
) -> Analysis:
    identity = fingerprint(raw)
    try:
        message = parse_message(raw, mime_limits)
    except ParseRejected as exc:
        return Analysis(
            fingerprint=identity,
            message=None,
            rejected_code=exc.code,
            rejected_reason=exc.reason,
            automatic=_automatic_from_headers(raw, envelope_from),
        )
    automatic = automatic_reason(message, envelope_from)
    if automatic:  # never decode photos for a bounce or an out-of-office
        return Analysis(
            message=_without_payloads(message), automatic=automatic, fingerprint=identity
        )
    photos: list[Photo] = []
    refused: list[RefusedFile] = []
    plans = budget.plan(message.attachments, image_limits)
    gate = budget.PixelGate(image_limits.max_pixels)

    def photo(att: Attachment, planned: budget.PhotoPlan) -> ProcessedImage | str:
        if planned.refusal:
            return planned.refusal
        with gate.decoding(planned.pixels):
            return _image_or_reason(att, image_limits)

    # Pillow decodes and resizes without the GIL: a case's photos go side by side.
    with ThreadPoolExecutor(max_workers=PHOTO_THREADS) as threads:
        results = list(threads.map(photo, message.attachments, plans))
    for att, result in zip(message.attachments, results, strict=True):
        if isinstance(result, str):
            refused.append(RefusedFile(att.filename, result))
            continue
        if att.inline and result.width * result.height < MIN_INLINE_PHOTO_PIXELS:
            continue  # a logo in a signature: neither a photo nor worth a complaint
        photos.append(Photo(att.filename, att.description, att.data, result))
    return Analysis(
        message=_without_payloads(message),
        body=strip_quoted(message.text),
        photos=tuple(photos),
        refused=tuple(refused),
        fingerprint=identity,
    )


def _image_or_reason(att: Attachment, limits: ImageLimits) -> ProcessedImage | str:
    try:
        return process_image(att.data, att.filename, limits)
    except ParseRejected as exc:
        return exc.reason


def _automatic_from_headers(raw: bytes, envelope_from: str) -> str:
    """Is an unreadable message automatic? Its header block alone says, so a bounce that
    breaks the MIME limits is still never answered."""
    end = raw.find(b"\r\n\r\n")
    end = raw.find(b"\n\n") if end < 0 else end
    head = raw if end < 0 else raw[:end]
    try:
        headers_only = parse_message(head + b"\r\n\r\n", MimeLimits())
    except ParseRejected:
        return "its headers cannot be read" if not envelope_from.strip("<> ") else ""
    return automatic_reason(headers_only, envelope_from)


def _without_payloads(message: ParsedMessage) -> ParsedMessage:
    """Attachment bytes already live in Photo.original; don't ship them back twice."""
    return replace(message, attachments=tuple(replace(a, data=b"") for a in message.attachments))
