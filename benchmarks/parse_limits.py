"""How fast the parser refuses what it must refuse, and what one phone photo costs: the figures
the parse tests used to assert as wall-clock limits (issue #10 item 6). The tests keep the
behaviour (refused, with which code); the time is measured here, beside a baseline.

- 5,000 levels of MIME nesting and 20,000 empty parts: refused (mime-depth / too-many-parts);
  issue #2 wanted each within 2 s.
- a PNG declaring 100,000 × 100,000 pixels: refused from its header (decompression-bomb);
  within 1 s, because nothing is decoded.
- a 12 MP phone JPEG with EXIF/GPS through process_image (clean copy, review copy, thumbnail).
"""

from __future__ import annotations

import io
import random
import statistics
import struct
import time
import zlib
from collections.abc import Callable

from PIL import Image, ImageDraw

from benchmarks.machine import describe
from mailflow.parse.images import process_image
from mailflow.parse.mime import parse_message
from mailflow.parse.types import ParseRejected

TARGETS_S = {"nesting": 2.0, "empty parts": 2.0, "png bomb": 1.0}


def _nested(levels: int) -> bytes:
    out = b"From: a@example.org\r\nSubject: deep\r\n"
    for i in range(levels):
        out += b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
    out += b"Content-Type: text/plain\r\n\r\nbottom\r\n"
    for i in reversed(range(levels)):
        out += b"--b%d--\r\n" % i
    return out


def _empty_parts(count: int) -> bytes:
    head = 'From: a@example.org\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
    return (head + "--b\r\n\r\nx\r\n" * count + "--b--\r\n").encode()


def _png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def _phone_jpeg() -> bytes:
    rnd = random.Random(3)
    im = Image.new("RGB", (4032, 3024), (200, 150, 130))
    draw = ImageDraw.Draw(im)
    for _ in range(4032 * 3024 // 4000):
        x, y, r = rnd.randrange(4032), rnd.randrange(3024), rnd.randrange(3, 40)
        draw.ellipse((x, y, x + r, y + r), fill=(rnd.randrange(100, 255),
                                                  rnd.randrange(60, 200), rnd.randrange(50, 180)))
    im = Image.blend(im, Image.effect_noise(im.size, 40).convert("RGB"), 0.2)
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif.get_ifd(0x8825).update({1: "N", 2: (40.0, 42.0, 46.0), 3: "W", 4: (74.0, 0.0, 21.0)})
    out = io.BytesIO()
    im.save(out, "JPEG", quality=90, exif=exif)
    return out.getvalue()


def _median_seconds(work: Callable[[], object], runs: int) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def _refused(parse: Callable[[], object]) -> Callable[[], None]:
    def work() -> None:
        try:
            parse()
        except ParseRejected:
            return
        raise AssertionError("expected a refusal")
    return work


def run(quick: bool) -> None:
    print(describe())
    runs = 1 if quick else 5
    nested, empty, bomb = _nested(5000), _empty_parts(20000), _png_declaring(100_000, 100_000)
    parse_message(_nested(8))  # warm: the first call pays for imports and caches
    baseline = _median_seconds(lambda: parse_message(_nested(8)), runs)
    print(f"  baseline: 8 levels of nesting, read        {baseline * 1000:8.1f} ms")
    for label, work in (
        ("nesting", _refused(lambda: parse_message(nested))),
        ("empty parts", _refused(lambda: parse_message(empty))),
        ("png bomb", _refused(lambda: process_image(bomb, "bomb.png"))),
    ):
        seconds = _median_seconds(work, runs)
        missed = "  MISSED" if seconds > TARGETS_S[label] else ""
        print(f"  {label:<12} refused in {seconds * 1000:8.1f} ms "
              f"(target {TARGETS_S[label]:.0f} s){missed}", flush=True)
    photo = _phone_jpeg()
    seconds = _median_seconds(lambda: process_image(photo, "IMG_12MP.jpg"), 1 if quick else 3)
    bare = _median_seconds(lambda: _bare_decode(photo), 1 if quick else 3)
    print(f"  process_image, 12 MP JPEG of {len(photo) / 1e6:.1f} MB: {seconds * 1000:.0f} ms "
          f"(median of {1 if quick else 3}); Pillow's bare full decode of it {bare * 1000:.0f} ms: "
          f"{seconds / bare:.2f}x", flush=True)


def _bare_decode(data: bytes) -> None:
    """The baseline: what any photo service pays at least, every pixel decoded once."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
