"""parse_message: a safe MIME walk over synthetic mail and the real-mail corpus."""

from __future__ import annotations

import base64
import contextlib
import struct
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailflow.parse.auto import automatic_reason
from mailflow.parse.mime import parse_message
from mailflow.parse.mime_walk import FORWARD_MARKER
from mailflow.parse.types import MimeLimits, ParsedMessage, ParseRejected
from tests.support.corpus import corpus_messages

BOUNCES = (
    "zammad-mail033-undelivered-mail-returned-to-sender-notification.eml",
    "mikel-report_422.eml",
    "mikel-raw_email_with_mimepart_without_content_type.eml",
)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 4 + b"\xff\xd9"
FORM = "Patient name: Jane Testpatient\nDate of birth: 1961-03-03\nSex: female\n"


def case_message(photos: int = 3, text: str = FORM) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Dr. Ada Testdoc <Ada.Testdoc@Clinic.Example>"
    msg["To"] = "Cases <cases@mailflow.example>, second@mailflow.example"
    msg["Cc"] = "nurse@clinic.example"
    msg["Subject"] = "New case"
    msg["Message-ID"] = "<case-1@clinic.example>"
    msg["In-Reply-To"] = "<ack-1@mailflow.example>"
    msg["References"] = "<a@x.example> <ack-1@mailflow.example>"
    msg["Date"] = "Tue, 05 Mar 2024 10:00:00 -0500"
    msg.set_content(text)
    for i in range(photos):
        msg.add_attachment(JPEG, maintype="image", subtype="jpeg", filename=f"photo{i + 1}.jpg")
    return msg


def raw_message(headers: str, body: str) -> bytes:
    return (headers.strip("\n").replace("\n", "\r\n") + "\r\n\r\n" + body).encode("latin-1")


# --- the ordinary case -------------------------------------------------------------------------


def test_case_with_three_photos() -> None:
    parsed = parse_message(case_message().as_bytes())
    assert parsed.text == FORM.strip()
    assert [a.filename for a in parsed.attachments] == ["photo1.jpg", "photo2.jpg", "photo3.jpg"]
    assert all(a.data == JPEG and a.content_type == "image/jpeg" for a in parsed.attachments)
    assert parsed.from_addr == "ada.testdoc@clinic.example"
    assert parsed.from_name == "Dr. Ada Testdoc"
    assert parsed.to_addrs == ("cases@mailflow.example", "second@mailflow.example")
    assert parsed.cc_addrs == ("nurse@clinic.example",)
    assert parsed.subject == "New case"
    assert parsed.message_id == "<case-1@clinic.example>"
    assert parsed.in_reply_to == ("<ack-1@mailflow.example>",)
    assert parsed.references == ("<a@x.example>", "<ack-1@mailflow.example>")
    assert parsed.date is not None and parsed.date.isoformat() == "2024-03-05T10:00:00-05:00"
    assert parsed.content_type == "multipart/mixed"
    assert ("Subject", "New case") in parsed.headers
    assert parsed.defects == ()


def test_message_without_text_or_attachments() -> None:
    parsed = parse_message(raw_message("From: a@example.org\nSubject: empty", ""))
    assert parsed.text == ""
    assert parsed.attachments == ()
    empty_multipart = raw_message(
        'From: a@example.org\nContent-Type: multipart/mixed; boundary="b"', "--b--\r\n"
    )
    assert parse_message(empty_multipart).attachments == ()


def test_absent_headers_are_empty() -> None:
    parsed = parse_message(b"\r\nhello")
    assert (parsed.message_id, parsed.subject, parsed.from_addr, parsed.date) == ("", "", "", None)
    assert parsed.text == "hello"


# --- limits --------------------------------------------------------------------------------------


def nested_multipart(levels: int) -> bytes:
    out = b"From: a@example.org\r\nSubject: deep\r\n"
    for i in range(levels):
        out += b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
    out += b"Content-Type: text/plain\r\n\r\nbottom\r\n"
    for i in reversed(range(levels)):
        out += b"--b%d--\r\n" % i
    return out


def test_nesting_at_the_limit_is_read() -> None:
    assert parse_message(nested_multipart(8)).text == "bottom"


def test_twenty_levels_of_nesting_are_rejected() -> None:
    with pytest.raises(ParseRejected) as info:
        parse_message(nested_multipart(20))
    assert info.value.code == "mime-depth"
    assert info.value.reason == "The message nests MIME parts 20 levels deep; the limit is 8."


def test_pathological_nesting_is_rejected() -> None:
    # how fast: benchmarks/parse_limits.py (a figure, not a wall-clock limit in a test)
    with pytest.raises(ParseRejected) as info:
        parse_message(nested_multipart(5000))
    assert info.value.code in ("mime-depth", "too-many-parts")


def test_too_many_parts() -> None:
    with pytest.raises(ParseRejected) as info:
        parse_message(case_message(photos=6).as_bytes(), MimeLimits(max_parts=5))
    assert info.value.code == "too-many-parts"
    assert "8 MIME parts" in info.value.reason and "limit is 5" in info.value.reason


def test_five_hundred_attachments_are_rejected() -> None:
    with pytest.raises(ParseRejected) as info:
        parse_message(case_message(photos=500).as_bytes())
    assert info.value.code == "too-many-parts"


def test_thousands_of_empty_parts_are_rejected() -> None:
    raw = raw_message(
        'From: a@example.org\nContent-Type: multipart/mixed; boundary="b"',
        "--b\r\n\r\nx\r\n" * 20000 + "--b--\r\n",
    )
    with pytest.raises(ParseRejected) as info:  # how fast: benchmarks/parse_limits.py
        parse_message(raw)
    assert info.value.code == "too-many-parts"


def test_too_many_attachments() -> None:
    with pytest.raises(ParseRejected) as info:
        parse_message(case_message(photos=41).as_bytes())
    assert info.value.code == "too-many-attachments"
    assert "limit is 40" in info.value.reason
    assert len(parse_message(case_message(photos=40).as_bytes()).attachments) == 40


def test_too_many_headers_in_a_part() -> None:
    headers = "".join(f"X-Filler-{i}: {i}\r\n" for i in range(501))
    raw = raw_message(
        'From: a@example.org\nContent-Type: multipart/mixed; boundary="b"',
        f"--b\r\n{headers}Content-Type: text/plain\r\n\r\nhi\r\n--b--\r\n",
    )
    with pytest.raises(ParseRejected) as info:
        parse_message(raw)
    assert info.value.code == "too-many-headers"
    assert "limit is 500" in info.value.reason


def test_too_many_decoded_bytes() -> None:
    with pytest.raises(ParseRejected) as info:
        parse_message(case_message(photos=3).as_bytes(), MimeLimits(max_decoded_bytes=2000))
    assert info.value.code == "too-large"
    assert "MB" in info.value.reason


# --- bodies and charsets --------------------------------------------------------------------------


OUTLOOK_HTML = """<html xmlns:o="urn:schemas-microsoft-com:office:office"><head>
<meta http-equiv=3D"Content-Type" content=3D"text/html; charset=3Dwindows-1252">
<style><!-- p.MsoNormal {margin:0cm;} --></style></head>
<body lang=3DEN-US><div class=3DWordSection1>
<p class=3DMsoNormal><b>Patient name:</b> Jane Testpatient<o:p></o:p></p>
<p class=3DMsoNormal>Location: left forearm, caf=E9 au lait<o:p></o:p></p>
<p class=3DMsoNormal>Question: =93benign?=94<br>second line<o:p></o:p></p>
</div></body></html>"""


def test_html_only_outlook_mail_becomes_text() -> None:
    raw = raw_message(
        "From: Ada <ada@clinic.example>\nSubject: case\nMIME-Version: 1.0\n"
        'Content-Type: text/html; charset="windows-1252"\n'
        "Content-Transfer-Encoding: quoted-printable",
        OUTLOOK_HTML,
    )
    text = parse_message(raw).text
    assert "<" not in text and "MsoNormal" not in text
    lines = [line for line in text.split("\n") if line]
    assert lines == [
        "Patient name: Jane Testpatient",
        "Location: left forearm, café au lait",
        "Question: “benign?”",
        "second line",
    ]


def test_windows_1252_quoted_printable_plain() -> None:
    raw = raw_message(
        "From: a@example.org\nContent-Type: text/plain; charset=windows-1252\n"
        "Content-Transfer-Encoding: quoted-printable",
        "Caf=E9 =93quoted=94 =80 5 long soft=\r\n break\r\n",
    )
    assert parse_message(raw).text == "Café “quoted” € 5 long soft break"


def test_plain_alternative_is_preferred_and_html_only_used_alone() -> None:
    msg = EmailMessage()
    msg["From"] = "a@example.org"
    msg.set_content("plain version")
    msg.add_alternative("<p>html version</p>", subtype="html")
    assert parse_message(msg.as_bytes()).text == "plain version"
    html_only = EmailMessage()
    html_only.set_content("<p>only <b>html</b></p>", subtype="html")
    assert parse_message(html_only.as_bytes()).text == "only html"


def test_empty_plain_alternative_falls_back_to_html() -> None:
    msg = EmailMessage()
    msg.set_content(" \n")
    msg.add_alternative("<div>Patient name: Jane</div><div>Sex: F</div>", subtype="html")
    assert parse_message(msg.as_bytes()).text == "Patient name: Jane\nSex: F"


def test_inline_photo_in_html_mail_is_kept() -> None:
    msg = EmailMessage()
    msg["From"] = "a@example.org"
    msg.set_content("see photo")
    msg.add_alternative('<p>see photo <img src="cid:p1@x"></p>', subtype="html")
    html = msg.get_payload()[1]
    html.add_related(JPEG, "image", "jpeg", cid="<p1@x>", filename="back.jpg")
    parsed = parse_message(msg.as_bytes())
    assert parsed.text == "see photo"
    (photo,) = parsed.attachments
    assert (photo.filename, photo.content_id, photo.data) == ("back.jpg", "<p1@x>", JPEG)


@pytest.mark.parametrize(
    ("charset", "codec", "text"),
    [
        ("windows-1252", "cp1252", "Café “quoted” – €"),
        ("iso-8859-1", "latin-1", "Grüße aus Köln"),
        ("utf-8", "utf-8", "Jane Testpatient ✓ 患者"),
        ("gb2312", "gb2312", "患者皮疹三个月"),
        ("shift_jis", "shift_jis", "皮膚の写真を送ります"),
        ("iso-2022-jp", "iso2022_jp", "皮膚の写真を送ります"),
        ("ks_c_5601-1987", "cp949", "피부 사진을 보냅니다"),
        ("utf-7", "utf-7", "Zürich – 東京"),
        ("cp1250", "cp1250", "Příliš žluťoučký kůň"),
        ("windows-1258", "cp1258", "Đà Nă\u0303ng"),  # cp1258 spells ẵ as ă + tilde
    ],
)
def test_body_charsets(charset: str, codec: str, text: str) -> None:
    raw = raw_message(
        f"From: a@example.org\nContent-Type: text/plain; charset={charset}\n"
        "Content-Transfer-Encoding: 8bit",
        "",
    ) + text.encode(codec)
    parsed = parse_message(raw)
    assert parsed.text == text.encode(codec).decode(codec)
    assert parsed.defects == ()


def test_unknown_charset_does_not_crash_and_is_a_defect() -> None:
    raw = raw_message(
        "From: a@example.org\nSubject: =?x-unknown-charset?Q?Hello_there?=\n"
        "Content-Type: text/plain; charset=x-unknown-charset",
        "Body text \xe9",
    )
    parsed = parse_message(raw)
    assert parsed.subject == "Hello there"
    assert parsed.text.startswith("Body text ")
    assert any("x-unknown-charset" in defect for defect in parsed.defects)


def test_undeclared_8bit_falls_back_to_windows_1252() -> None:
    raw = raw_message("From: a@example.org", "") + "Café".encode("cp1252")
    assert parse_message(raw).text == "Café"


def test_flowed_text_is_joined() -> None:
    raw = raw_message(
        "From: a@example.org\nContent-Type: text/plain; charset=utf-8; format=flowed",
        "Question: is this a \r\nmelanoma?\r\nNext line\r\n",
    )
    assert parse_message(raw).text == "Question: is this a melanoma?\nNext line"


def test_broken_base64_is_a_defect_not_a_crash() -> None:
    raw = raw_message(
        'From: a@example.org\nContent-Type: multipart/mixed; boundary="b"',
        "--b\r\nContent-Type: image/jpeg\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        "/9j/4AAQSkZJRgABA\r\n--b--\r\n",
    )
    parsed = parse_message(raw)
    assert parsed.attachments[0].data.startswith(b"\xff\xd8\xff")
    assert any("base64" in defect for defect in parsed.defects)


def test_transfer_encoding_with_trailing_semicolon() -> None:
    raw = raw_message(
        "From: a@example.org\nContent-Type: text/plain\nContent-Transfer-Encoding: base64;",
        "aGVsbG8gd29ybGQ=\r\n",
    )
    assert parse_message(raw).text == "hello world"


# --- headers ------------------------------------------------------------------------------------


def test_rfc2047_subject_split_inside_a_character() -> None:
    # "Hautausschlag – Rücken" in UTF-8, split between the two bytes of "ü".
    first, second = "Hautausschlag – R".encode() + b"\xc3", b"\xbccken"
    words = [base64.b64encode(part).decode() for part in (first, second)]
    raw = raw_message(
        f"From: a@example.org\nSubject: =?UTF-8?B?{words[0]}?=\n =?UTF-8?B?{words[1]}?=", "x"
    )
    assert parse_message(raw).subject == "Hautausschlag – Rücken"


def test_header_injection_is_removed_from_subject_and_headers() -> None:
    raw = raw_message(
        "From: a@example.org\nSubject: =?utf-8?Q?Case=0D=0ABcc:_victim@example.org?=\n"
        "X-Note: =?utf-8?Q?a=0Ab=00c?=",
        "x",
    )
    parsed = parse_message(raw)
    assert parsed.subject == "Case Bcc: victim@example.org"
    for _, value in parsed.headers:
        assert "\r" not in value and "\n" not in value and "\x00" not in value


def test_raw_8bit_subject_and_encoded_display_name_with_comma() -> None:
    raw = (
        b"From: =?utf-8?Q?Testdoc=2C_Ada?= <ADA@Clinic.Example>\r\n"
        b"To: undisclosed-recipients:;\r\n"
        b"Subject: Gr\xc3\xbc\xc3\x9fe\r\n\r\nx"
    )
    parsed = parse_message(raw)
    assert (parsed.from_name, parsed.from_addr) == ("Testdoc, Ada", "ada@clinic.example")
    assert parsed.subject == "Grüße"
    assert parsed.to_addrs == ()


def test_folded_message_id_and_bad_date() -> None:
    raw = raw_message(
        "From: a@example.org\nMessage-ID:\n\t<folded@example.org>\nDate: not a date", "x"
    )
    parsed = parse_message(raw)
    assert parsed.message_id == "<folded@example.org>"
    assert parsed.date is None


# --- attachments ------------------------------------------------------------------------------


def attachment_message(disposition: str, ctype: str = "image/jpeg") -> bytes:
    return raw_message(
        'From: a@example.org\nContent-Type: multipart/mixed; boundary="b"',
        "--b\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
        f"--b\r\nContent-Type: {ctype}\r\nContent-Disposition: {disposition}\r\n"
        "Content-Transfer-Encoding: base64\r\nContent-Description: close-up of the back\r\n\r\n"
        "/9j/4AAQ\r\n--b--\r\n",
    )


@pytest.mark.parametrize(
    ("disposition", "expected"),
    [
        ("attachment; filename*=utf-8''Gr%C3%BC%C3%9Fe%20R%C3%BCcken.jpg", "Grüße Rücken.jpg"),
        (
            "attachment; filename*0*=utf-8''R%C3%BCcken; filename*1=\"-close.jpg\"",
            "Rücken-close.jpg",
        ),
        ('attachment; filename="=?utf-8?Q?R=C3=BCcken.jpg?="', "Rücken.jpg"),
        ('attachment; filename="../../etc/passwd.jpg"', "passwd.jpg"),
        ('attachment; filename="C:\\\\Users\\\\ada\\\\back.jpg"', "back.jpg"),
        ('attachment; filename="a\\tb\x7f.jpg"', "atb.jpg"),
        ('attachment; filename=".."', "attachment-1.jpg"),
        ("attachment", "attachment-1.jpg"),
        ("inline", "attachment-1.jpg"),
    ],
)
def test_attachment_file_names(disposition: str, expected: str) -> None:
    parsed = parse_message(attachment_message(disposition))
    (attachment,) = parsed.attachments
    assert attachment.filename == expected
    assert attachment.data == b"\xff\xd8\xff\xe0\x00\x10"
    assert attachment.description == "close-up of the back"


def test_octet_stream_and_named_files_are_attachments() -> None:
    octet = parse_message(attachment_message("inline", "application/octet-stream"))
    assert octet.attachments[0].filename == "attachment-1.bin"
    pdf = parse_message(attachment_message('attachment; filename="letter.pdf"', "application/pdf"))
    assert pdf.attachments[0].filename == "letter.pdf"
    assert pdf.text == "body"


def test_text_file_attachment_is_not_the_body() -> None:
    msg = EmailMessage()
    msg.set_content("the body")
    msg.add_attachment("file text", filename="notes.txt")
    parsed = parse_message(msg.as_bytes())
    assert parsed.text == "the body"
    assert [a.filename for a in parsed.attachments] == ["notes.txt"]


# --- forwarded, signed, encrypted ----------------------------------------------------------------


def test_forwarded_message_with_photo() -> None:
    inner = case_message(photos=1, text="Patient name: Jane Testpatient\n")
    inner.replace_header("Subject", "Rash on back")
    outer = EmailMessage()
    outer["From"] = "fwd@clinic.example"
    outer["Subject"] = "Fwd: Rash on back"
    outer.set_content("Please see below.")
    outer.add_attachment(inner)
    parsed = parse_message(outer.as_bytes())
    top, forwarded = parsed.text.split(FORWARD_MARKER)
    assert top.strip() == "Please see below."
    assert "From: Dr. Ada Testdoc <Ada.Testdoc@Clinic.Example>" in forwarded
    assert "Subject: Rash on back" in forwarded
    assert "Patient name: Jane Testpatient" in forwarded
    assert [(a.filename, a.data) for a in parsed.attachments] == [("photo1.jpg", JPEG)]


def test_pgp_signed_body_and_no_signature_attachment() -> None:
    raw = raw_message(
        'From: a@example.org\nContent-Type: multipart/signed; micalg=pgp-sha256;\n protocol="'
        'application/pgp-signature"; boundary="s"',
        "--s\r\nContent-Type: text/plain\r\n\r\nsigned text\r\n"
        "--s\r\nContent-Type: application/pgp-signature; name=signature.asc\r\n\r\n"
        "-----BEGIN PGP SIGNATURE-----\r\nabc\r\n-----END PGP SIGNATURE-----\r\n--s--\r\n",
    )
    parsed = parse_message(raw)
    assert parsed.text == "signed text"
    assert parsed.attachments == ()


def test_pgp_encrypted_has_no_text_and_a_defect() -> None:
    raw = raw_message(
        'From: a@example.org\nContent-Type: multipart/encrypted;\n protocol="'
        'application/pgp-encrypted"; boundary="e"',
        "--e\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
        "--e\r\nContent-Type: application/octet-stream; name=encrypted.asc\r\n\r\n"
        "-----BEGIN PGP MESSAGE-----\r\nabc\r\n-----END PGP MESSAGE-----\r\n--e--\r\n",
    )
    parsed = parse_message(raw)
    assert parsed.text == ""
    assert parsed.attachments == ()
    assert any("encrypted" in defect for defect in parsed.defects)


# --- winmail.dat ----------------------------------------------------------------------------------


def tnef_object(level: int, name: int, kind: int, data: bytes) -> bytes:
    header = struct.pack("<BHHI", level, name, kind, len(data))
    return header + data + struct.pack("<H", sum(data) & 0xFFFF)


def tnef_blob(files: list[tuple[str, bytes]], body: bytes = b"") -> bytes:
    """A minimal TNEF stream as Outlook writes it: version, codepage, body, attachments."""
    out = struct.pack("<IH", 0x223E9F78, 1)
    out += tnef_object(1, 0x9006, 0x0008, struct.pack("<I", 0x10000))
    out += tnef_object(1, 0x9007, 0x0006, struct.pack("<II", 1252, 0))
    if body:
        out += tnef_object(1, 0x800C, 0x0002, body)
    for name, data in files:
        out += tnef_object(2, 0x9002, 0x0006, bytes(14))  # starts an attachment
        out += tnef_object(2, 0x8010, 0x0001, name.encode() + b"\x00")
        out += tnef_object(2, 0x800F, 0x0006, data)
    return out


def winmail_message(blob: bytes, text: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = "outlook@clinic.example"
    if text is not None:
        msg.set_content(text)
    msg.add_attachment(blob, maintype="application", subtype="ms-tnef", filename="winmail.dat")
    return msg.as_bytes()


def test_winmail_dat_files_and_body_are_extracted() -> None:
    blob = tnef_blob([("back.jpg", JPEG), ("arm close.png", b"\x89PNG\r\n")], b"Caf\xe9 body")
    parsed = parse_message(winmail_message(blob))
    assert [(a.filename, a.content_type, a.data) for a in parsed.attachments] == [
        ("back.jpg", "image/jpeg", JPEG),
        ("arm close.png", "image/png", b"\x89PNG\r\n"),
    ]
    assert parsed.text == "Café body"
    assert parsed.defects == ()


def test_winmail_dat_body_is_only_a_fallback() -> None:
    blob = tnef_blob([("back.jpg", JPEG)], b"tnef body")
    assert parse_message(winmail_message(blob, "mime body")).text == "mime body"


def test_corrupt_winmail_dat_is_kept_with_a_defect() -> None:
    parsed = parse_message(winmail_message(b"\x78\x9f\x3e\x22" + b"garbage" * 3, "body"))
    assert [a.filename for a in parsed.attachments] == ["winmail.dat"]
    assert any("winmail.dat" in defect for defect in parsed.defects)
    truncated = tnef_blob([("back.jpg", JPEG)])[:40]
    assert parse_message(winmail_message(truncated, "body")).text == "body"


# --- the real-mail corpus and fuzzing -----------------------------------------------------------


def test_every_corpus_message_parses_or_is_rejected() -> None:
    files = corpus_messages()
    for path in files:
        try:
            parsed = parse_message(path.read_bytes())
        except ParseRejected as exc:
            assert exc.code and exc.reason, path.name
            continue
        assert isinstance(parsed, ParsedMessage), path.name
        assert "\r" not in parsed.subject and "\n" not in parsed.subject, path.name
        assert all(a.filename for a in parsed.attachments), path.name


def test_corpus_bounces_are_automatic() -> None:
    files = {path.name: path for path in corpus_messages()}
    for name in BOUNCES:
        parsed = parse_message(files[name].read_bytes())
        assert automatic_reason(parsed, "mailer-daemon@relay.example"), name
    human = parse_message(files["zammad-mail005.eml"].read_bytes())
    assert automatic_reason(human, "marc.smith@example.com") == ""


def test_corpus_charsets_decode() -> None:
    files = {path.name: path for path in corpus_messages()}
    assert (
        "このメールはテスト用のメールです"
        in parse_message(files["mikel-japanese_shift_jis.eml"].read_bytes()).text
    )
    assert parse_message(files["mikel-ks_c_5601-1987.eml"].read_bytes()).text == "스티해"
    assert parse_message(files["zammad-mail091.eml"].read_bytes()).subject == "メルマガ解除"
    outlook = parse_message(files["mikel-raw_email_with_illegal_boundary.eml"].read_bytes())
    assert outlook.text.startswith("Hello\nThis is an outlook test")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_mutated_mail_never_crashes(data: st.DataObject) -> None:
    raw = bytearray(case_message(photos=1).as_bytes())
    for _ in range(data.draw(st.integers(1, 20))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position : position + 1] = data.draw(st.binary(min_size=0, max_size=8))
    with contextlib.suppress(ParseRejected):
        parse_message(bytes(raw))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_crash(raw: bytes) -> None:
    with contextlib.suppress(ParseRejected):
        parse_message(raw)
