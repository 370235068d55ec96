"""Attachment file names made safe to show and to store."""

from __future__ import annotations

import mimetypes
import re
import unicodedata

# Built-in tables only: the system's /etc/mime.types would make results differ by machine.
_TYPES = mimetypes.MimeTypes()
_EXTENSIONS = {
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/pjpeg": ".jpg",
    "image/png": ".png",
    "image/heic": ".heic",
    "image/heif": ".heif",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/tiff": ".tif",
    "application/pdf": ".pdf",
    "application/octet-stream": ".bin",
    "text/plain": ".txt",
    "text/html": ".html",
    "message/rfc822": ".eml",
    "application/ms-tnef": ".dat",
}
_MAX_LEN = 200
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")


def extension_for(content_type: str) -> str:
    ctype = content_type.lower()
    return _EXTENSIONS.get(ctype) or _TYPES.guess_extension(ctype) or ".bin"


def guess_type(filename: str) -> str:
    ctype, _ = _TYPES.guess_type(filename, strict=False)
    return ctype or "application/octet-stream"


def has_encoded_words(name: str) -> bool:
    return bool(_ENCODED_WORD.search(name))


def safe_filename(name: str | None, content_type: str, index: int) -> str:
    """A base name with no directories, control or format characters; never empty.

    `index` (1-based) names the file when nothing usable is left: "attachment-3.jpg".
    Format characters go too: a right-to-left override can make "gpj.exe" look like a photo.
    """
    cleaned = ""
    if name:
        base = name.replace("\\", "/").rsplit("/", 1)[-1]
        base = "".join(ch for ch in base if unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
        base = " ".join(base.split()).strip(". ")
        if len(base) > _MAX_LEN:
            stem, dot, ext = base.rpartition(".")
            ext = ext[:16] if dot else ""
            base = (stem if dot else base)[: _MAX_LEN - len(ext) - 1].rstrip() + (
                f".{ext}" if ext else ""
            )
        cleaned = base
    return cleaned or f"attachment-{index}{extension_for(content_type)}"
