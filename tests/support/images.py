"""Synthetic photos for tests: textured (so they are sharp), sized, optionally with EXIF/GPS."""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw

_PHOTOS: dict[tuple[int, int, int, str, int], bytes] = {}


def skin_photo(
    width: int = 1600,
    height: int = 1200,
    seed: int = 1,
    fmt: str = "JPEG",
    exif: Image.Exif | None = None,
    quality: int = 90,
) -> bytes:
    """A synthetic photo of skin; the same arguments give the same bytes (kept: drawing one
    takes a moment, and most tests send three)."""
    key = (width, height, seed, fmt, quality)
    if exif is None and key in _PHOTOS:
        return _PHOTOS[key]
    rnd = random.Random(seed)
    img = Image.new("RGB", (width, height), (200, 150, 130))
    draw = ImageDraw.Draw(img)
    for _ in range(400):
        x, y = rnd.randrange(width), rnd.randrange(height)
        r = rnd.randrange(4, max(5, width // 25))
        tone = (rnd.randrange(120, 230), rnd.randrange(60, 160), rnd.randrange(50, 140))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tone, outline=(60, 30, 20))
    for i in range(0, width, 37):
        draw.line((i, 0, i + rnd.randrange(-40, 40), height), fill=(150, 100, 90), width=1)
    out = io.BytesIO()
    kwargs: dict[str, object] = {"quality": quality} if fmt == "JPEG" else {}
    if exif is not None:
        kwargs["exif"] = exif
    img.save(out, fmt, **kwargs)
    if exif is None:
        _PHOTOS[key] = out.getvalue()
    return out.getvalue()


def gps_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "TestCam"  # Make
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (40.0, 44.0, 55.0)
    gps[3] = "W"
    gps[4] = (73.0, 59.0, 11.0)
    return exif
