"""Case photos: one photo's bytes to a ProcessedImage, the steps in order.

Pure: bytes in, ProcessedImage out (or ParseRejected). The file name is used only in messages;
what a file *is* is decided by decoding it. The steps each have a module: parse.image_decode
(limits, the decode, what a file is when it is not a photo), parse.image_copies (the clean,
review and thumbnail copies; parse.image_metadata strips metadata from the bytes) and
parse.image_quality (the warnings: too small, dark, washed out, blurred).

Cost for a 12-megapixel JPEG is about one full decode: the thumbnail and the quality figures
come from that same decode, and metadata is removed by dropping JPEG segments / PNG chunks from
the byte stream, pixels untouched.
"""

from __future__ import annotations

from PIL import Image, ImageOps

from mailflow.parse.image_copies import derived_copies
from mailflow.parse.image_decode import FORMATS, decode_photo, orientation
from mailflow.parse.image_quality import quality_warnings
from mailflow.parse.types import ImageLimits, ProcessedImage


def process_image(
    data: bytes, filename: str, limits: ImageLimits = ImageLimits()
) -> ProcessedImage:
    """Decode, check and clean one photo; raise ParseRejected with a reason naming the file."""
    name = filename or "The photo"
    im = decode_photo(data, name, limits)
    turn = orientation(im)
    upright: Image.Image = ImageOps.exif_transpose(im) if turn != 1 else im
    copies = derived_copies(data, FORMATS[im.format or ""], turn, upright, limits)
    return ProcessedImage(
        format=FORMATS[im.format or ""],
        width=upright.width,
        height=upright.height,
        clean=copies.clean,
        clean_content_type=copies.clean_content_type,
        thumbnail=copies.thumbnail,
        review=copies.review,
        warnings=quality_warnings(name, upright.size, copies.thumb, limits),
    )
