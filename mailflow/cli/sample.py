"""mailflow sample-photos: three synthetic skin photos to try the service with (no patient)."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image, ImageDraw

from mailflow.config import Config

# One file per required view, named so the view is read from the file name.
VIEWS = ("distribution.jpg", "closeup.jpg", "oblique.jpg")
SIZE = (1600, 1200)  # above the 800x600 minimum of the photo guide


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sample = sub.add_parser("sample-photos",
                            help="write three synthetic photos to try sending a case")
    sample.add_argument("--out", type=Path, default=Path("."), metavar="DIR")
    sample.set_defaults(handler=cmd_sample_photos, needs_app=False)


def synthetic_photo(seed: int) -> Image.Image:
    """Textured blotches on a skin tone: sharp enough to pass the focus check, nobody's skin."""
    rnd = random.Random(seed)
    width, height = SIZE
    img = Image.new("RGB", SIZE, (200, 150, 130))
    draw = ImageDraw.Draw(img)
    for _ in range(400):
        x, y, r = rnd.randrange(width), rnd.randrange(height), rnd.randrange(4, width // 25)
        tone = (rnd.randrange(120, 230), rnd.randrange(60, 160), rnd.randrange(50, 140))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tone, outline=(60, 30, 20))
    return img


def cmd_sample_photos(config: Config, args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate(VIEWS, start=1):
        path = args.out / name
        synthetic_photo(seed).save(path, "JPEG", quality=90)
        print(path)
    return 0
