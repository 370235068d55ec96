"""Values that parse/ produces. Pure data: picklable, so parsing can run in a worker process."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


class ParseRejected(Exception):
    """The message (or a part of it) cannot be accepted; `reason` is shown to people.

    `code` is short and machine-readable (e.g. "mime-depth", "too-many-parts").
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class MimeLimits:
    max_depth: int = 8  # nesting of multipart / message/rfc822
    max_parts: int = 200  # all MIME parts in the tree
    max_headers: int = 500  # header fields in any one part
    max_decoded_bytes: int = 60 * 1024 * 1024  # sum of decoded part payloads
    max_attachments: int = 40  # attachments kept (files, not text bodies)


@dataclass(frozen=True)
class Attachment:
    filename: str  # a safe base name: no directories, no control characters, never empty
    content_type: str  # as declared, lower case (what it *is* is decided by decoding)
    data: bytes
    description: str = ""  # Content-Description, a caption some clients send
    content_id: str = ""
    inline: bool = False


@dataclass(frozen=True)
class ParsedMessage:
    message_id: str  # "<...>" as sent, "" when absent
    subject: str  # decoded, single line: CR/LF and other control characters removed
    from_addr: str  # lower-cased addr-spec of From, "" when absent or unparseable
    from_name: str
    to_addrs: tuple[str, ...]
    cc_addrs: tuple[str, ...]
    in_reply_to: tuple[str, ...]  # message ids "<...>"
    references: tuple[str, ...]
    date: datetime | None
    auto_submitted: str  # Auto-Submitted value lower-cased, "" when absent
    precedence: str  # Precedence value lower-cased, "" when absent
    list_id: str
    content_type: str  # top-level, e.g. "multipart/report"
    text: str  # the body as plain text (HTML converted), quoted replies NOT removed
    attachments: tuple[Attachment, ...]
    defects: tuple[str, ...] = ()  # tolerated problems, for the admin (e.g. unknown charset)
    headers: tuple[tuple[str, str], ...] = ()  # top-level headers, decoded, for trust checks
    # The same headers as written (unfolded, no encoded words decoded): structured fields such
    # as Authentication-Results must be read this way, or a sender's encoded text becomes syntax.
    raw_headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class FormField:
    key: str  # canonical name, e.g. "patient_name"
    label: str  # what the provider wrote, e.g. "Pt name"
    value: str  # trimmed; multi-line values keep their line breaks


@dataclass(frozen=True)
class CaseForm:
    fields: dict[str, str]  # canonical key -> value (strings as typed, trimmed)
    labels: dict[str, str]  # canonical key -> the label the provider used
    date_of_birth: date | None
    sex: str  # "female" | "male" | "other" | "" when absent or unrecognised
    urgency: str  # "routine" | "urgent" (default routine)
    missing: tuple[str, ...]  # canonical keys of required fields that are absent/empty
    invalid: tuple[tuple[str, str], ...]  # (canonical key, why) for values that make no sense
    photo_captions: dict[str, str] = field(
        default_factory=dict
    )  # "1"/"2"... or file name -> caption
    unknown_lines: tuple[str, ...] = ()  # "Key: value" lines whose key we did not recognise


@dataclass(frozen=True)
class ProcessedImage:
    format: str  # "jpeg" | "png" | "heif" | "webp" (what decoding found, not the name)
    width: int  # after orientation is applied
    height: int
    clean: bytes  # full-size copy, orientation applied, no EXIF/GPS/XMP/comments
    clean_content_type: str  # "image/jpeg" or "image/png"
    thumbnail: bytes  # JPEG, longest side <= ImageLimits.thumbnail_px, no metadata
    warnings: tuple[str, ...]  # people-readable quality warnings
    review: bytes = b""  # JPEG, longest side <= ImageLimits.review_px: what reviewers receive


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int = 60_000_000  # decompression-bomb guard (a 48 MP phone photo fits)
    # All the photos of one message together: what a worker decodes for one message is bounded
    # (twelve 59 MP PNGs drove a worker to 608 MB). Photos past it are refused by name.
    max_pixels_per_message: int = 150_000_000
    max_bytes: int = 40 * 1024 * 1024
    min_width: int = 800  # teledermatology quality standard: at least 800x600
    min_height: int = 600
    thumbnail_px: int = 1024
    review_px: int = 2048  # copies sent to the dermatologist and put in the report
    # Variance of the Laplacian on a 512 px grey copy. Calibrated: sharp test patterns and real
    # photos score 50-2200, a Gaussian blur of 8 px (at 1600 px) scores under 10; skin is
    # smoother than test patterns, so the bar is set low to avoid false alarms. 27, not 25,
    # since the thumbnail is box-reduced rather than resampled (LANCZOS): near the bar a
    # photo scores about 8% higher on it, so 27 keeps the same photos above and below.
    blur_threshold: float = 27.0
    dark_threshold: float = 40.0  # mean brightness 0..255 below: too dark
    bright_threshold: float = 230.0  # mean brightness above: washed out
