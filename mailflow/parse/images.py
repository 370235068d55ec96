"""Case photos: one photo's bytes to a ProcessedImage, the steps in order.

Pure: bytes in, ProcessedImage out (or ParseRejected). The file name is used only in messages;
what a file *is* is decided by decoding it. The steps each have a module: parse.image_decode
(limits, the decode, what a file is when it is not a photo), parse.image_copies (the clean,
review and thumbnail copies; parse.image_metadata strips metadata from the bytes) and
parse.image_quality (the warnings: too small, dark, washed out, blurred).

Cost for a 12-megapixel upright JPEG is about a quarter of a full decode: its clean copy is
its own bytes with the metadata segments dropped (pixels untouched), so its pixels are decoded
at the review copy's scale only (a DCT-scaled decode); the review copy, the thumbnail and the
quality figures come from that one decode.
"""

from __future__ import annotations

from PIL import Image, ImageOps

from mailflow.parse.image_copies import derived_copies
from mailflow.parse.image_decode import FORMATS, decode_photo, orientation
from mailflow.parse.image_metadata import strip_jpeg_metadata
from mailflow.parse.image_quality import quality_warnings
from mailflow.parse.types import ImageLimits, ProcessedImage


def process_image(
    data: bytes, filename: str, limits: ImageLimits = ImageLimits()
) -> ProcessedImage:
    """Decode, check and clean one photo; raise ParseRejected with a reason naming the file."""
    name = filename or "The photo"
    # an upright JPEG's clean copy is its own bytes less the metadata: no full-size pixels
    lossless = strip_jpeg_metadata(data) if data[:3] == b"\xff\xd8\xff" else None
    im, declared = decode_photo(data, name, limits,
                                review_px=limits.review_px if lossless is not None else 0)
    turn = orientation(im)
    upright: Image.Image = ImageOps.exif_transpose(im) if turn != 1 else im
    copies = derived_copies(data, FORMATS[im.format or ""], turn, upright, limits,
                            lossless if turn == 1 else None, scaled=im.size != declared)
    width, height = declared if turn == 1 else upright.size
    return ProcessedImage(
        format=FORMATS[im.format or ""],
        width=width,
        height=height,
        clean=copies.clean,
        clean_content_type=copies.clean_content_type,
        thumbnail=copies.thumbnail,
        review=copies.review,
        warnings=quality_warnings(name, (width, height), copies.thumb, limits),
    )
