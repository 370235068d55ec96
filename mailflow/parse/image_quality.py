"""Quality warnings on a photo: too small to judge detail, too dark, washed out, blurred.

The figures are measured on a small grey copy (sharpness as the variance of a Laplacian,
brightness as the mean); the thresholds are ImageLimits, from the configuration.
"""

from __future__ import annotations

from PIL import Image, ImageFilter, ImageStat

from mailflow.parse.image_copies import shrink
from mailflow.parse.types import ImageLimits

_STATS_PX = 512  # the quality figures are computed on a grey copy about this size

_LAPLACIAN = ImageFilter.Kernel((3, 3), [0, 1, 0, 1, -4, 1, 0, 1, 0], scale=1, offset=128)


def measure_quality(im: Image.Image) -> tuple[float, float]:
    """(sharpness, brightness): Laplacian variance and mean of a grey copy ~512 px long."""
    grey = shrink(im.convert("L"), _STATS_PX)
    edges = grey.filter(_LAPLACIAN)
    if edges.width > 2 and edges.height > 2:  # Pillow copies border pixels unfiltered
        edges = edges.crop((1, 1, edges.width - 1, edges.height - 1))
    sharpness = ImageStat.Stat(edges).var[0]
    brightness = ImageStat.Stat(grey).mean[0]
    return sharpness, brightness


def quality_warnings(
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
