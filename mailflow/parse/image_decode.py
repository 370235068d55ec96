"""Prove a file is a photo we accept by decoding it, within limits; otherwise say what it is.

Pure: bytes in, a fully decoded Pillow image out (or ParseRejected naming the file). The size
and pixel limits are checked before any pixel is decoded; then every pixel is decoded, which is
the check against truncation and corruption. A file that is not a photo we accept is sniffed so
that the refusal says what it looks like (a PDF, a GIF, a text file).

Pillow's DecompressionBombWarning is an error here: set process-wide at import, and again with
catch_warnings() around each decode, so parallel threads always see the same filters.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import pillow_heif
from PIL import Image

from mailflow.parse.types import ImageLimits, ParseRejected

pillow_heif.register_heif_opener()

# Pillow format id -> ProcessedImage.format. MPO (multi-picture JPEG, common from phones) is a
# JPEG whose first picture is the photo.
FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "HEIF": "heif", "WEBP": "webp"}
# Only these plugins ever parse the bytes: fewer parsers exposed to hostile input.
_OPEN_FORMATS = ("JPEG", "PNG", "HEIF", "WEBP")
_ACCEPTED_TEXT = "JPEG, PNG, HEIC or WebP"

# Also process-wide, so that the catch_warnings() contexts of photos decoded on parallel threads
# (parse.analyze) all save and restore the same filter state: a bomb is an error on every thread.
warnings.simplefilter("error", Image.DecompressionBombWarning)

# Decoded pixels are held in blocks this large: above glibc's largest mmap threshold (32 MB),
# so a photo's memory goes back to the system when it is freed instead of staying with the
# process (decoding six 59 MP photos one after another: 535 MB peak with Pillow's 16 MB
# blocks, 321 MB with these; benchmarks/photo_memory.py). Small images use small blocks.
_PIXEL_BLOCK_BYTES = 64 * 1024 * 1024
Image.core.set_block_size(_PIXEL_BLOCK_BYTES)


def decode_photo(data: bytes, name: str, limits: ImageLimits,
                 review_px: int = 0) -> tuple[Image.Image, tuple[int, int]]:
    """The photo with every pixel decoded (its `format` a key of FORMATS), and its size as
    the file declares it.

    review_px > 0 (the caller needs no full-size pixels: the clean copy comes from the bytes):
    a JPEG that need not turn is decoded at the DCT scale (1/2, 1/4 or 1/8) that the review
    copy's whole-factor reduction would reach anyway, so a 12 MP photo decodes a quarter of
    the pixels. Every coefficient is still read, so a cut-short file is still refused.
    """
    if not data:
        raise ParseRejected("not-an-image", f"{name} is empty (0 bytes), so it is not a photo.")
    if len(data) > limits.max_bytes:
        raise ParseRejected(
            "image-too-large",
            f"{name} is {_mb(len(data))}; photos up to {_mb(limits.max_bytes)} can be accepted. "
            "Please send a smaller copy.",
        )
    with warnings.catch_warnings():
        # Pillow only warns between 1x and 2x its own pixel limit; a warning is a refusal here.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        im = _open(data, name, limits)
        size = im.size
        if review_px and im.format in ("JPEG", "MPO") and orientation(im) == 1:
            scale = _dct_scale(max(size), review_px)
            if scale > 1 and min(size) >= scale:  # a sliver of a photo keeps a pixel a side
                im.draft(im.mode, (size[0] // scale, size[1] // scale))
        _decode(im, name)
    return im, size


def _dct_scale(longest: int, review_px: int) -> int:
    """The largest of 8, 4, 2 that divides the review copy's reduction factor (1: none)."""
    factor = -(-longest // review_px)  # ceiling: what image_copies.shrink reduces by
    return next((s for s in (8, 4, 2) if factor % s == 0), 1)


def declared_pixels(data: bytes) -> int:
    """Width × height as the file's header declares it (no pixel decoded); 0 when the header
    cannot be read (process_image then says what the file is)."""
    try:
        with Image.open(io.BytesIO(data), formats=_OPEN_FORMATS) as im:
            width, height = im.size
    except Exception:  # not a photo we accept, or damaged: not this check's business
        return 0
    return width * height


def orientation(im: Image.Image) -> int:
    """EXIF orientation 1..8; anything absent, unreadable or out of range counts as 1."""
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # broken EXIF is dropped anyway; treat the photo as upright
        return 1
    return value if isinstance(value, int) and 2 <= value <= 8 else 1


def _open(data: bytes, name: str, limits: ImageLimits) -> Image.Image:
    """Parse the header only; refuse before any pixel is decoded if it declares too many."""
    try:
        im = Image.open(io.BytesIO(data), formats=_OPEN_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _bomb(name) from None
    except Exception:  # any failure to identify is answered by sniffing what it is
        raise _unidentified(data, name) from None
    width, height = im.size
    if width * height > limits.max_pixels:
        raise ParseRejected(
            "decompression-bomb",
            f"{name} is {width}×{height} pixels ({_megapixels(width * height)}); "
            f"photos up to {_megapixels(limits.max_pixels)} can be accepted.",
        )
    if im.format not in FORMATS:
        raise ParseRejected(
            "unsupported-image-format",
            f"{name} is a {im.format} image; please send photos as {_ACCEPTED_TEXT}.",
        )
    return im


def _decode(im: Image.Image, name: str) -> None:
    """Decode every pixel: this is the check that a photo is a photo (truncation, corruption).

    Relies on Pillow's default ImageFile.LOAD_TRUNCATED_IMAGES = False.
    """
    try:
        im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _bomb(name) from None
    except Exception:  # the decoders raise many types; all mean "unreadable"
        kind = FORMATS.get(im.format or "", "image").upper()
        raise ParseRejected(
            "corrupt-image",
            f"{name} looks like a {_kind_name(kind)} photo but it is damaged or incomplete "
            "(perhaps cut short in sending) and cannot be read; please send it again.",
        ) from None


def _bomb(name: str) -> ParseRejected:
    return ParseRejected(
        "decompression-bomb",
        f"{name} declares far more pixels than any photo has (it may be a damaged or "
        "deliberately crafted file), so it cannot be processed.",
    )


# --- what a file is when it is not a photo we accept ----------------------------------------

# (test, what it is). Documents and other image formats a mail client might attach.
_SNIFF: tuple[tuple[Callable[[bytes], bool], str, str], ...] = (
    (lambda d: b"%PDF-" in d[:1024], "not-an-image", "a PDF document"),
    (lambda d: _looks_html(d), "not-an-image", "an HTML web page"),
    (lambda d: b"<svg" in d[:1024].lower(), "unsupported-image-format", "an SVG drawing"),
    (lambda d: d.lstrip()[:5] == b"<?xml", "not-an-image", "an XML document"),
    (lambda d: d[:4] == b"PK\x03\x04", "not-an-image", "a ZIP archive or Office document"),
    (lambda d: d[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "not-an-image", "an Office document"),
    (lambda d: d[:5] == b"{\\rtf", "not-an-image", "an RTF document"),
    (lambda d: d[:6] in (b"GIF87a", b"GIF89a"), "unsupported-image-format", "a GIF image"),
    (lambda d: d[:2] == b"BM", "unsupported-image-format", "a BMP image"),
    (
        lambda d: d[:4] in (b"II*\x00", b"MM\x00*"),
        "unsupported-image-format",
        "a TIFF or camera RAW image",
    ),
    (
        lambda d: d[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or d[:4] == b"\xffO\xffQ",
        "unsupported-image-format",
        "a JPEG 2000 image",
    ),
    (lambda d: d[4:12] in (b"ftypavif", b"ftypavis"), "unsupported-image-format", "an AVIF image"),
    (lambda d: d[:4] == b"8BPS", "unsupported-image-format", "a Photoshop document"),
    (
        lambda d: d[4:8] == b"ftyp" or (d[:4] == b"RIFF" and d[8:12] == b"AVI "),
        "not-an-image",
        "a video",
    ),
)

# Accepted formats whose header nonetheless failed to parse: damaged, not foreign.
_DAMAGED = (
    (lambda d: d[:3] == b"\xff\xd8\xff", "JPEG"),
    (lambda d: d[:8] == b"\x89PNG\r\n\x1a\n", "PNG"),
    (lambda d: d[:4] == b"RIFF" and d[8:12] == b"WEBP", "WEBP"),
    (lambda d: d[4:8] == b"ftyp" and d[8:12] in (b"heic", b"heix", b"mif1", b"msf1"), "HEIF"),
)


def _unidentified(data: bytes, name: str) -> ParseRejected:
    for test, kind in _DAMAGED:
        if test(data):
            return ParseRejected(
                "corrupt-image",
                f"{name} looks like a {_kind_name(kind)} photo but it is damaged and cannot be "
                "read; please send it again.",
            )
    for sniff, code, what in _SNIFF:
        if sniff(data):
            if code == "unsupported-image-format":
                reason = f"{name} is {what}; please send photos as {_ACCEPTED_TEXT}."
            else:
                reason = f"{name} is not a photo (it looks like {what})."
            return ParseRejected(code, reason)
    if _looks_text(data):
        return ParseRejected("not-an-image", f"{name} is not a photo (it looks like a text file).")
    return ParseRejected(
        "not-an-image", f"{name} is not a photo (its contents are not an image we recognise)."
    )


def _looks_html(data: bytes) -> bool:
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in head


def _looks_text(data: bytes) -> bool:
    head = data[:1024]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t" for ch in text)


def _kind_name(kind: str) -> str:
    return {"HEIF": "HEIC", "WEBP": "WebP"}.get(kind, kind)


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def _megapixels(n: int) -> str:
    return f"{n / 1e6:.{0 if n >= 10_000_000 else 1}f} megapixels"
