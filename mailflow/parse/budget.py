"""How many pixels one message may have decoded: in all ([intake] max_pixels_per_message),
and at the same moment (one largest-allowed photo's worth, whatever the message holds).

The total bounds the work a message can ask for; the gate bounds the memory, which is set by
the photos decoding side by side, not by how many the message has (measured by
benchmarks/photo_memory.py). Both read the pixel counts the files' headers declare, before
any pixel is decoded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from mailflow.parse.image_decode import declared_pixels
from mailflow.parse.types import Attachment, ImageLimits


@dataclass(frozen=True)
class PhotoPlan:
    pixels: int  # to be decoded (0: the file is refused before any pixel is decoded)
    refusal: str = ""  # why the photo is not taken, "" when it is decoded


def plan(attachments: Sequence[Attachment], limits: ImageLimits) -> list[PhotoPlan]:
    """In message order, each photo that still fits in the message's budget is taken: one
    huge photo does not shut out the small ones after it."""
    left = limits.max_pixels_per_message
    plans: list[PhotoPlan] = []
    for att in attachments:
        pixels = declared_pixels(att.data)
        if pixels > limits.max_pixels:  # refused on its own by process_image, undecoded
            plans.append(PhotoPlan(0))
        elif pixels > left:
            plans.append(PhotoPlan(0, _over_budget(att.filename, limits)))
        else:
            left -= pixels
            plans.append(PhotoPlan(pixels))
    return plans


def _over_budget(name: str, limits: ImageLimits) -> str:
    return (
        f"{name or 'A photo'} was not processed: the photos in one email can add up to "
        f"{limits.max_pixels_per_message / 1e6:.0f} megapixels, and the ones before it used "
        "that up. Please send it in a reply to this email."
    )


class PixelGate:
    """Photos decode side by side only while their pixels together stay within `limit`; a
    photo on its own always may (its size was checked against the same limit)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._in_flight = 0
        self._changed = threading.Condition()

    @contextmanager
    def decoding(self, pixels: int) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(
                lambda: self._in_flight == 0 or self._in_flight + pixels <= self.limit)
            self._in_flight += pixels
        try:
            yield
        finally:
            with self._changed:
                self._in_flight -= pixels
                self._changed.notify_all()
