"""Case photos: prove each is a photo by decoding it, strip metadata, thumbnail, quality warnings.

Pure: bytes in, ProcessedImage out (or ParseRejected). The file name is used only in messages;
what a file *is* is decided by decoding it.

Cost for a 12-megapixel JPEG is about one full decode: the thumbnail and the quality figures
come from that same decode (reduce() + resize instead of a second draft decode), and metadata
is removed by dropping JPEG segments / PNG chunks from the byte stream, pixels untouched.

Pillow's DecompressionBombWarning is an error here: set process-wide at import, and again with
catch_warnings() around each decode, so parallel threads always see the same filters.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Callable

import pillow_heif
from PIL import Image, ImageFilter, ImageOps, ImageStat

from mailflow.parse.types import ImageLimits, ParseRejected, ProcessedImage

pillow_heif.register_heif_opener()

# Pillow format id -> ProcessedImage.format. MPO (multi-picture JPEG, common from phones) is a
# JPEG whose first picture is the photo.
_FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "HEIF": "heif", "WEBP": "webp"}
# Only these plugins ever parse the bytes: fewer parsers exposed to hostile input.
_OPEN_FORMATS = ("JPEG", "PNG", "HEIF", "WEBP")
_ACCEPTED_TEXT = "JPEG, PNG, HEIC or WebP"

_JPEG_QUALITY = 90
# Also process-wide, so that the catch_warnings() contexts of photos decoded on parallel threads
# (parse.analyze) all save and restore the same filter state: a bomb is an error on every thread.
warnings.simplefilter("error", Image.DecompressionBombWarning)

# Decoded pixels are held in blocks this large: above glibc's largest mmap threshold (32 MB),
# so a photo's memory goes back to the system when it is freed instead of staying with the
# process (decoding six 59 MP photos one after another: 535 MB peak with Pillow's 16 MB
# blocks, 321 MB with these; benchmarks/photo_memory.py). Small images use small blocks.
_PIXEL_BLOCK_BYTES = 64 * 1024 * 1024
Image.core.set_block_size(_PIXEL_BLOCK_BYTES)

_THUMB_QUALITY = 85
_REVIEW_QUALITY = 88
_STATS_PX = 512  # the quality figures are computed on a grey copy about this size

_LAPLACIAN = ImageFilter.Kernel((3, 3), [0, 1, 0, 1, -4, 1, 0, 1, 0], scale=1, offset=128)


def process_image(
    data: bytes, filename: str, limits: ImageLimits = ImageLimits()
) -> ProcessedImage:
    """Decode, check and clean one photo; raise ParseRejected with a reason naming the file."""
    name = filename or "The photo"
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
        _decode(im, name)
    fmt = _FORMATS[im.format or ""]
    orientation = _orientation(im)
    upright: Image.Image = ImageOps.exif_transpose(im) if orientation != 1 else im
    ready, icc = _jpeg_ready(upright)
    clean, clean_type = _clean_copy(data, fmt, orientation, upright, ready, icc)
    review = _shrink(ready, limits.review_px, exact=False)
    if review is ready and clean_type == "image/jpeg":
        review_jpeg = clean  # already small enough and already a clean JPEG
    else:
        review_jpeg = _encode_jpeg(review, icc, _REVIEW_QUALITY)
    thumb = _shrink(review, limits.thumbnail_px)  # from the smaller copy: cheaper
    return ProcessedImage(
        format=fmt,
        width=upright.width,
        height=upright.height,
        clean=clean,
        clean_content_type=clean_type,
        thumbnail=_encode_jpeg(thumb, icc, _THUMB_QUALITY),
        review=review_jpeg,
        warnings=_quality_warnings(name, upright.size, thumb, limits),
    )


# --- decoding -------------------------------------------------------------------------------


def declared_pixels(data: bytes) -> int:
    """Width × height as the file's header declares it (no pixel decoded); 0 when the header
    cannot be read (process_image then says what the file is)."""
    try:
        with Image.open(io.BytesIO(data), formats=_OPEN_FORMATS) as im:
            width, height = im.size
    except Exception:  # not a photo we accept, or damaged: not this check's business
        return 0
    return width * height


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
    if im.format not in _FORMATS:
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
        kind = _FORMATS.get(im.format or "", "image").upper()
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


def _orientation(im: Image.Image) -> int:
    """EXIF orientation 1..8; anything absent, unreadable or out of range counts as 1."""
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # broken EXIF is dropped anyway; treat the photo as upright
        return 1
    return value if isinstance(value, int) and 2 <= value <= 8 else 1


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


# --- clean copy -------------------------------------------------------------------------------


def _clean_copy(
    data: bytes,
    fmt: str,
    orientation: int,
    upright: Image.Image,
    ready: Image.Image,
    icc: bytes | None,
) -> tuple[bytes, str]:
    """Full-size copy without EXIF/GPS/XMP/IPTC/comments; lossless where nothing must rotate."""
    if orientation == 1 and fmt == "jpeg":
        stripped = strip_jpeg_metadata(data)
        if stripped is not None:
            return stripped, "image/jpeg"
    if fmt == "png":
        stripped = strip_png_metadata(data) if orientation == 1 else None
        return stripped or _encode_png(upright), "image/png"
    return _encode_jpeg(ready, icc, _JPEG_QUALITY), "image/jpeg"


def _jpeg_ready(im: Image.Image) -> tuple[Image.Image, bytes | None]:
    """An RGB or L image a JPEG can hold (alpha flattened on white), and the ICC still valid."""
    icc = im.info.get("icc_profile") or None
    mode = im.mode
    if mode in ("RGB", "L"):
        return im, icc
    if mode.startswith("I") or mode == "F":  # 16-bit / float grey: scale into 0..255
        scale = 1 / 256 if mode.startswith("I;16") or mode == "I" else 255
        return im.convert("I").point(lambda v: v * scale).convert("L"), icc
    grey = mode in ("1", "LA", "La")
    if "A" in mode or "a" in mode or "transparency" in im.info:
        rgba = im.convert("LA" if grey else "RGBA")
        background = Image.new(rgba.mode, rgba.size, (255, 255) if grey else (255, 255, 255, 255))
        flat = Image.alpha_composite(background, rgba).convert("L" if grey else "RGB")
        return flat, icc
    out = im.convert("L" if grey else "RGB")
    # A CMYK (or other) profile no longer describes RGB pixels.
    return out, icc if mode in ("1", "P", "RGBX") else None


def _encode_jpeg(im: Image.Image, icc: bytes | None, quality: int) -> bytes:
    im.info = {}  # Pillow's JPEG writer would copy a "comment" from info
    buf = io.BytesIO()
    if icc:
        im.save(buf, "JPEG", quality=quality, icc_profile=icc)
    else:
        im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _encode_png(im: Image.Image) -> bytes:
    # Keep only what the pixels need; text, eXIf and time are never written.
    im.info = {k: v for k, v in im.info.items() if k in ("icc_profile", "transparency")}
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=6)
    return buf.getvalue()


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


# --- thumbnail and quality --------------------------------------------------------------------


def _shrink(im: Image.Image, longest: int, exact: bool = True) -> Image.Image:
    """Longest side <= `longest`.

    exact: box-reduce by an integer factor (fast), then resample to exactly `longest`.
    Not exact (the review copy): reduce by the smallest whole factor that fits, and stop.
    reduce(n) averages n x n blocks, a sound filter for a whole factor, and skips the LANCZOS
    resample of a full 12 MP photo (8 ms against 122 ms, measured by benchmarks/intake/);
    the copy may be a little under `longest` (4000 px -> 2000 px).
    """
    width, height = im.size
    if max(width, height) <= longest:
        return im
    if not exact:
        return im.reduce(-(-max(width, height) // longest))  # ceiling: the smallest that fits
    factor = max(width, height) // longest
    if factor >= 2:
        im = im.reduce(factor)
    scale = longest / max(im.size)
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    return im.resize(size, Image.Resampling.LANCZOS)


def measure_quality(im: Image.Image) -> tuple[float, float]:
    """(sharpness, brightness): Laplacian variance and mean of a grey copy ~512 px long."""
    grey = _shrink(im.convert("L"), _STATS_PX)
    edges = grey.filter(_LAPLACIAN)
    if edges.width > 2 and edges.height > 2:  # Pillow copies border pixels unfiltered
        edges = edges.crop((1, 1, edges.width - 1, edges.height - 1))
    sharpness = ImageStat.Stat(edges).var[0]
    brightness = ImageStat.Stat(grey).mean[0]
    return sharpness, brightness


def _quality_warnings(
    name: str, size: tuple[int, int], thumb: Image.Image, limits: ImageLimits
) -> tuple[str, ...]:
    found: list[str] = []
    width, height = size
    # Long side against the larger minimum, short against the smaller: portrait photos pass.
    need_long = max(limits.min_width, limits.min_height)
    need_short = min(limits.min_width, limits.min_height)
    if max(size) < need_long or min(size) < need_short:
        found.append(
            f"{name} is {width}×{height} pixels; at least {limits.min_width}×{limits.min_height} "
            "is needed to judge detail."
        )
    sharpness, brightness = measure_quality(thumb)
    if brightness < limits.dark_threshold:
        found.append(f"{name} is too dark; please retake it in bright, even light.")
    elif brightness > limits.bright_threshold:
        found.append(
            f"{name} looks washed out (overexposed); please retake it without direct flash "
            "or glare."
        )
    elif sharpness < limits.blur_threshold:  # exposure problems already flatten the figure
        found.append(
            f"{name} looks blurred (out of focus); please retake it, holding the camera still "
            "and letting it focus on the skin."
        )
    return tuple(found)


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def _megapixels(n: int) -> str:
    return f"{n / 1e6:.{0 if n >= 10_000_000 else 1}f} megapixels"
