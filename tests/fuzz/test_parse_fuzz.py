"""Every parse/ entry point under Hypothesis: whatever comes in, the answer is a value or the
documented refusal (ParseRejected, or for analyze() an Analysis with a rejected_code), never
another exception, and no I/O on the way (tests/fuzz/purity.py).

Short and derandomized here; `make fuzz` runs the same tests long and random (budget.py).
"""

from __future__ import annotations

import io
import socket
import unicodedata
from datetime import date
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from mailflow.parse import (
    answer,
    auto,
    budget,
    charset,
    dates,
    filenames,
    fingerprint,
    form,
    headers,
    htmltext,
    image_decode,
    image_metadata,
    image_quality,
    images,
    keyvalue,
    registration,
    reply,
    views,
    winmail,
)
from mailflow.parse.analyze import Analysis, analyze
from mailflow.parse.mime import parse_message
from mailflow.parse.types import (
    Attachment,
    ImageLimits,
    MimeLimits,
    ParsedMessage,
    ParseRejected,
)
from tests.fuzz import strategies as gen
from tests.fuzz.budget import budget as examples
from tests.fuzz.purity import pure

TODAY = date(2026, 11, 30)
SMALL_IMAGES = ImageLimits(min_width=2, min_height=2, thumbnail_px=16, review_px=32)


def _parsed_or_refused(raw: bytes, limits: MimeLimits = MimeLimits()) -> ParsedMessage | None:
    try:
        with pure():
            return parse_message(raw, limits)
    except ParseRejected as exc:
        assert exc.code and exc.reason
        return None


def _check_message(msg: ParsedMessage) -> None:
    assert all(ord(c) >= 32 and unicodedata.category(c) != "Cc" for c in msg.subject)
    for att in msg.attachments:
        assert att.filename and "/" not in att.filename and "\\" not in att.filename
        assert not any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in att.filename)


def _check_analysis(result: Analysis) -> None:
    assert isinstance(result, Analysis)
    assert result.fingerprint
    if result.message is None:
        assert result.rejected_code and result.rejected_reason
    else:
        _check_message(result.message)
        assert all(not a.data for a in result.message.attachments)
    for refused in result.refused:
        assert refused.reason


@examples(120)
@given(gen.messages())
def test_parse_message_on_mime_trees(raw: bytes) -> None:
    msg = _parsed_or_refused(raw)
    if msg is not None:
        _check_message(msg)


@examples(60)
@given(gen.messages(max_depth=4), st.sampled_from(["", "<>", "dr.a@clinic.test"]))
def test_analyze_on_mime_trees(raw: bytes, envelope_from: str) -> None:
    with pure():
        result = analyze(raw, envelope_from, MimeLimits(max_depth=3, max_parts=12),
                         SMALL_IMAGES)
    _check_analysis(result)


@examples(150)
@given(st.one_of(st.binary(max_size=600),
                 st.tuples(gen.messages(max_depth=2), st.binary(max_size=40),
                           st.integers(0, 10_000)).map(
                     lambda t: t[0][: t[2]] + t[1] + t[0][t[2]:])))
def test_analyze_on_bytes(raw: bytes) -> None:
    with pure():
        result = analyze(raw, "sender@clinic.test", image_limits=SMALL_IMAGES)
    _check_analysis(result)


@examples(150)
@given(gen.CASE_FORMS)
def test_case_form(text: str) -> None:
    with pure():
        parsed = form.parse_case_form(text, TODAY)
    assert set(parsed.fields) <= set(form.LABELS)
    assert set(parsed.missing) <= set(form.REQUIRED)
    assert parsed.urgency in ("routine", "urgent")
    assert parsed.sex in ("", "female", "male", "other")
    assert parsed.date_of_birth is None or parsed.date_of_birth <= TODAY


@examples(150)
@given(gen.ANSWERS)
def test_answer(text: str) -> None:
    with pure():
        parsed = answer.parse_answer(reply.strip_quoted(text))
    assert parsed.kind in answer.KINDS
    assert parsed.in_person in ("", *answer.IN_PERSON_OPTIONS)
    assert parsed.image_quality in ("", *answer.IMAGE_QUALITY_OPTIONS)


@examples(100)
@given(gen.REGISTRATIONS)
def test_registration(text: str) -> None:
    with pure():
        parsed = registration.parse_registration(text)
    assert set(parsed.fields) <= set(registration.LABELS)
    if "npi" in parsed.fields and registration.npi_is_valid(parsed.fields["npi"]):
        assert len(parsed.fields["npi"]) == 10


@examples(100)
@given(gen.TEXT, st.dictionaries(gen.TEXT, st.sampled_from(["a", "b"]), max_size=5),
       st.booleans())
def test_key_values(text: str, synonyms: dict[str, str], unknown: bool) -> None:
    with pure():
        found = keyvalue.parse_key_values(text, synonyms, ("a",), unknown_labels=unknown)
        keyvalue.normalize_label(text)
    assert set(found.values) <= {"a", "b"}


@examples(150)
@given(st.binary(max_size=200), gen.CHARSETS | gen.TEXT)
def test_charset(data: bytes, label: str) -> None:
    defects: list[str] = []
    with pure():
        text = charset.decode_bytes(data, label, defects)
        charset.normalize_label(label)
        charset.unescape_surrogates(text)
    assert isinstance(text, str)


@examples(150)
@given(st.one_of(gen.DATES, gen.TEXT), st.dates(date(1900, 1, 1), date(2200, 1, 1)))
def test_dates(text: str, today: date) -> None:
    with pure():
        found = dates.parse_date(text, today)
    assert found is None or isinstance(found, date)


@examples(150)
@given(st.none() | gen.FILENAMES, gen.LEAF_TYPES | gen.TEXT, st.integers(1, 50))
def test_filenames(name: str | None, content_type: str, index: int) -> None:
    with pure():
        safe = filenames.safe_filename(name, content_type, index)
        filenames.guess_type(name or "")
        filenames.has_encoded_words(name or "")
    assert safe and "/" not in safe and len(safe) <= 220


@examples(150)
@given(st.one_of(gen.HEADER_VALUES, gen.TEXT))
def test_headers(raw: str) -> None:
    defects: list[str] = []
    with pure():
        headers.single_line(raw)
        headers.unfold(raw)
        headers.decode_header_value(raw, defects)
        headers.message_ids(raw)
        headers.message_id(raw)
        headers.clean_addr_spec(raw)
        pairs = headers.parse_addresses(raw, defects)
    assert all(isinstance(a, str) and isinstance(n, str) for n, a in pairs)


@examples(100)
@given(st.one_of(gen.TEXT, gen.PAYLOADS.map(lambda b: b.decode("latin-1"))), st.booleans())
def test_html_text(markup: str, delsp: bool) -> None:
    defects: list[str] = []
    with pure():
        htmltext.html_to_text(markup, defects)
        htmltext.tidy_text(markup)
        htmltext.unflow(markup, delsp)
        htmltext.meta_charset(markup.encode("utf-8", "surrogatepass"))
        reply.strip_quoted(markup)


@examples(100)
@given(st.binary(max_size=400) | st.sampled_from([b"\x78\x9f\x3e\x22" + bytes(40)]))
def test_winmail(data: bytes) -> None:
    defects: list[str] = []
    with pure():
        content = winmail.read_tnef(data, defects)
        winmail.is_tnef("application/ms-tnef", "winmail.dat")
    assert content is not None or defects


def _damaged(data: bytes, cut: int, at: int, junk: bytes) -> bytes:
    at = at % (len(data) + 1)
    return data[:at] + junk + data[at + len(junk):][: max(0, cut)]


def _image(kind: str, size: tuple[int, int], mode: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB" if kind == "JPEG" and mode == "RGBA" else mode, size, 128).save(out, kind)
    return out.getvalue()


IMAGE_BYTES = st.one_of(
    st.binary(max_size=300),
    st.builds(_image, st.sampled_from(["JPEG", "PNG"]), st.tuples(st.integers(1, 40),
              st.integers(1, 40)), st.sampled_from(["RGB", "L"])),
    st.builds(_damaged, st.builds(_image, st.sampled_from(["JPEG", "PNG", "GIF", "WEBP"]),
                                  st.just((20, 10)), st.sampled_from(["RGB", "L", "RGBA"])),
              st.integers(0, 2000), st.integers(0, 2000), st.binary(max_size=8)),
)


@examples(150)
@given(IMAGE_BYTES, gen.FILENAMES)
def test_images(data: bytes, name: str) -> None:
    with pure():
        image_decode.declared_pixels(data)
        image_metadata.strip_jpeg_metadata(data)
        image_metadata.strip_png_metadata(data)
        try:
            done = images.process_image(data, name, SMALL_IMAGES)
        except ParseRejected as exc:
            assert exc.reason
            return
    assert done.width * done.height > 0 and done.clean and done.thumbnail
    with Image.open(io.BytesIO(done.clean)) as im, pure():
        image_quality.measure_quality(im.convert("RGB"))


@examples(60)
@given(st.lists(st.tuples(gen.FILENAMES, IMAGE_BYTES), max_size=4),
       st.integers(0, 2_000), st.integers(0, 2_000))
def test_photo_budget(photos: list[tuple[str, bytes]], per_photo: int, per_message: int) -> None:
    attachments = [Attachment(name, "image/jpeg", data) for name, data in photos]
    limits = ImageLimits(max_pixels=per_photo, max_pixels_per_message=per_message)
    with pure():
        plans = budget.plan(attachments, limits)
    assert len(plans) == len(attachments)
    assert sum(p.pixels for p in plans) <= per_message


@examples(100)
@given(st.lists(st.tuples(gen.FILENAMES, gen.TEXT), max_size=6),
       st.lists(st.sampled_from(list(views.REQUIRED_VIEWS)) | gen.TEXT, max_size=3))
def test_views(photos: list[tuple[str, str]], taken: list[str]) -> None:
    with pure():
        assigned = views.assign_views(photos, taken)
        views.missing_views(assigned)
    assert len(assigned) == len(photos)


@examples(100)
@given(st.lists(st.tuples(gen.HEADER_NAMES, gen.HEADER_VALUES), max_size=6),
       st.sampled_from(["", "<>", "MAILER-DAEMON@x", "noreply@clinic.test", "dr@clinic.test"]),
       gen.TEXT)
def test_automatic_reason(pairs: list[tuple[str, str]], envelope_from: str, text: str) -> None:
    values = dict(pairs)
    msg = ParsedMessage(
        message_id="", subject=values.get("Subject", ""), from_addr=values.get("From", ""),
        from_name="", to_addrs=(), cc_addrs=(), in_reply_to=(), references=(), date=None,
        auto_submitted=values.get("Auto-Submitted", ""),
        precedence=values.get("Precedence", ""), list_id=values.get("List-Id", ""),
        content_type=values.get("Content-Type", "text/plain"), text=text, attachments=(),
        headers=tuple(pairs), raw_headers=tuple(pairs))
    with pure():
        reason = auto.automatic_reason(msg, envelope_from)
        fingerprint.fingerprint(text.encode("utf-8", "surrogatepass"))
    assert isinstance(reason, str)


def test_the_purity_guard_sees_io(tmp_path: Path) -> None:
    """The guard can fail: a file written, or a socket opened, inside it is reported."""
    for act in (lambda: (tmp_path / "x").write_text("x"), lambda: socket.socket().close()):
        try:
            with pure():
                act()
        except AssertionError as exc:
            assert "parse/ did I/O" in str(exc)
        else:
            raise AssertionError("the guard missed I/O")
