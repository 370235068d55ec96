"""Remove metadata from JPEG and PNG byte streams without re-encoding a pixel.

EXIF (with GPS), XMP, IPTC, comments and private chunks are dropped; what shapes the pixels or
their colour is kept. Pure bytes in, bytes out; None when the structure is not understood, and
the caller then re-encodes instead.
"""

from __future__ import annotations

import re

# Next real marker inside entropy-coded data: FF00 is a stuffed byte, FFD0-D7 restart markers,
# FFFF fill; FF followed by anything else is a marker.
_ENTROPY_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


def strip_jpeg_metadata(data: bytes) -> bytes | None:
    """Drop EXIF/XMP (APP1), IPTC (APP13), comments and all other APPn except JFIF, ICC and Adobe.

    Segments are copied, never re-encoded. Anything after the first image's EOI (MPO pictures,
    motion-photo video, vendor trailers) is dropped. None when the structure is not understood
    (the caller then re-encodes).
    """
    if data[:2] != b"\xff\xd8":
        return None
    out = [b"\xff\xd8"]
    pos, size = 2, len(data)
    while pos + 1 < size and data[pos] == 0xFF:
        while pos + 1 < size and data[pos + 1] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos + 1 >= size:
            return None
        marker = data[pos + 1]
        if marker == 0xD9:
            out.append(b"\xff\xd9")
            return b"".join(out)
        if marker in _STANDALONE:
            out.append(data[pos : pos + 2])
            pos += 2
            continue
        if marker in (0x00, 0xD8) or pos + 4 > size:
            return None
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if end > size or end < pos + 4:
            return None
        kept = _kept_segment(marker, data[pos + 4 : end])
        if kept is not None:
            out.append(b"\xff" + bytes([marker]) + (len(kept) + 2).to_bytes(2, "big") + kept)
        pos = end
        if marker == 0xDA:  # start of scan: entropy-coded data runs to the next real marker
            found = _ENTROPY_END.search(data, pos)
            if found is None:
                return None
            out.append(data[pos : found.start()])
            pos = found.start()
    return None


def _kept_segment(marker: int, payload: bytes) -> bytes | None:
    if marker == 0xE0:
        # JFIF header kept, its optional thumbnail dropped (it may show an uncropped original).
        if payload[:5] == b"JFIF\x00" and len(payload) >= 14:
            return payload[:12] + b"\x00\x00"
        return None
    if marker == 0xE2:
        return payload if payload[:12] == b"ICC_PROFILE\x00" else None  # MPF index dropped
    if marker == 0xEE:
        return payload if payload[:5] == b"Adobe" else None  # colour transform flag
    if 0xE0 <= marker <= 0xEF or marker == 0xFE:
        return None
    return payload


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks that shape the pixels or their colour; text, eXIf, tIME and private chunks are dropped,
# and so are APNG frames (the default image stays).
_PNG_KEPT = frozenset(
    {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"cHRM", b"gAMA", b"iCCP", b"sBIT", b"sRGB"}
    | {b"cICP", b"mDCV", b"cLLI", b"bKGD", b"pHYs"}
)


def strip_png_metadata(data: bytes) -> bytes | None:
    """Copy only the kept PNG chunks, through IEND; None when the structure is not understood."""
    if data[:8] != _PNG_SIGNATURE:
        return None
    out = [_PNG_SIGNATURE]
    pos, size = 8, len(data)
    while pos + 12 <= size:
        chunk_type = data[pos + 4 : pos + 8]
        end = pos + 12 + int.from_bytes(data[pos : pos + 4], "big")
        if end > size:
            return None
        if chunk_type in _PNG_KEPT:
            out.append(data[pos:end])
        if chunk_type == b"IEND":
            return b"".join(out)
        pos = end
    return None
