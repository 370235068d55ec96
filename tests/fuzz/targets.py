"""Byte-level fuzz targets, one per parse/ entry point: bytes in, and the only exception that
may come out is ParseRejected (analyze() never raises: it reports a refusal in its Analysis).

Shared by the coverage-guided fuzzer (tests/fuzz/atheris_parse.py) and by the replay test
that runs every file of tests/fuzz/corpus/<target>/ through its target (test_corpus.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from mailflow.parse import (
    answer,
    charset,
    dates,
    form,
    headers,
    htmltext,
    image_decode,
    image_metadata,
    images,
    registration,
    reply,
    winmail,
)
from mailflow.parse.analyze import analyze
from mailflow.parse.mime import parse_message
from mailflow.parse.types import ImageLimits, MimeLimits, ParseRejected

TODAY = date(2026, 11, 30)
# Tiny photos are fine here: the fuzzer should reach past the size checks into the cleaning.
SMALL_IMAGES = ImageLimits(min_width=2, min_height=2, thumbnail_px=16, review_px=32)
# Limits low enough that a fuzzer's input reaches them in a few hundred bytes.
SMALL_MIME = MimeLimits(max_depth=4, max_parts=20, max_headers=50, max_attachments=5)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _analyze(data: bytes) -> None:
    result = analyze(data, "sender@clinic.test", SMALL_MIME, SMALL_IMAGES)
    assert result.message is not None or (result.rejected_code and result.rejected_reason)


def _mime(data: bytes) -> None:
    parse_message(data, SMALL_MIME)


def _image(data: bytes) -> None:
    image_decode.declared_pixels(data)
    image_metadata.strip_jpeg_metadata(data)
    image_metadata.strip_png_metadata(data)
    images.process_image(data, "photo.jpg", SMALL_IMAGES)


def _winmail(data: bytes) -> None:
    winmail.read_tnef(data, [])


def _headers(data: bytes) -> None:
    text = _text(data)
    headers.decode_header_value(text, [])
    headers.parse_addresses(text, [])
    headers.message_ids(text)


def _html(data: bytes) -> None:
    htmltext.html_to_text(charset.decode_bytes(data, htmltext.meta_charset(data), []), [])


def _words(data: bytes) -> None:
    text = _text(data)
    form.parse_case_form(text, TODAY)
    answer.parse_answer(reply.strip_quoted(text))
    registration.parse_registration(text)
    dates.parse_date(text, TODAY)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "analyze": _analyze,
    "mime": _mime,
    "image": _image,
    "winmail": _winmail,
    "headers": _headers,
    "html": _html,
    "words": _words,  # the case form, the answer and the registration, on the same text
}


def run(target: str, data: bytes) -> None:
    """One input; a ParseRejected is an answer, anything else is a crash."""
    try:
        TARGETS[target](data)
    except ParseRejected as exc:
        assert exc.code and exc.reason
