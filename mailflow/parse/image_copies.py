"""The copies made from a decoded photo: a clean full-size copy, a review copy, a thumbnail.

None of them carries the original's metadata (EXIF/GPS/XMP/IPTC, comments). The clean copy is
lossless where nothing must rotate (metadata dropped from the byte stream, parse.image_metadata)
and re-encoded otherwise. The review copy and the thumbnail come from the same decode, each by
reduce() (averaging whole blocks), not a second decode or a LANCZOS resample.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from mailflow.parse.image_metadata import strip_jpeg_metadata, strip_png_metadata
from mailflow.parse.types import ImageLimits

_JPEG_QUALITY = 90
_THUMB_QUALITY = 85
_REVIEW_QUALITY = 88


@dataclass(frozen=True)
class Copies:
    clean: bytes
    clean_content_type: str
    review: bytes  # JPEG
    thumbnail: bytes  # JPEG
    thumb: Image.Image  # the thumbnail's pixels, on which the quality figures are measured


def derived_copies(
    data: bytes, fmt: str, orientation: int, upright: Image.Image, limits: ImageLimits,
    lossless: bytes | None = None, scaled: bool = False,
) -> Copies:
    """The copies of one photo: `data` as received, `upright` its pixels turned upright.
    `lossless`: an upright JPEG's bytes without metadata, its clean copy; `scaled`: its pixels
    were decoded at a reduced scale (image_decode), so they are not the clean copy's."""
    ready, icc = _jpeg_ready(upright)
    if lossless is not None:
        clean, clean_type = lossless, "image/jpeg"
    else:
        clean, clean_type = _clean_copy(data, fmt, orientation, upright, ready, icc)
    review = shrink(ready, limits.review_px, exact=False)
    if review is ready and clean_type == "image/jpeg" and not scaled:
        review_jpeg = clean  # already small enough and already a clean JPEG
    else:
        review_jpeg = _encode_jpeg(review, icc, _REVIEW_QUALITY)
    thumb = shrink(review, limits.thumbnail_px, exact=False)  # from the smaller copy: cheaper
    thumbnail = _encode_jpeg(thumb, icc, _THUMB_QUALITY)
    return Copies(clean, clean_type, review_jpeg, thumbnail, thumb)


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


def shrink(im: Image.Image, longest: int, exact: bool = True) -> Image.Image:
    """Longest side <= `longest`.

    exact: box-reduce by an integer factor (fast), then resample to exactly `longest`.
    Not exact (the review copy, the thumbnail): reduce by the smallest whole factor that fits,
    and stop. reduce(n) averages n x n blocks, a sound filter for a whole factor, and skips
    the LANCZOS resample (a 12 MP photo: 8 ms against 122 ms, benchmarks/intake/; its 2000 px
    review copy to the thumbnail: 3 ms against 45 ms, issue #13); the copy may be under
    `longest` (4000 px -> 2000 px, 1600 px -> 800 px).
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
