"""Structured inputs for the parse/ fuzz tests: case forms, answers and registrations in the
shapes people type them (any label spelling, any spacing, any script), and MIME trees built
with email.message, with random nesting, charsets, transfer encodings and file names."""

from __future__ import annotations

import base64
import io
import quopri
from email.generator import BytesGenerator
from email.message import Message
from urllib.parse import quote

from hypothesis import strategies as st
from PIL import Image

from mailflow.parse import answer, form, registration

# Text people type, from any script, with the characters that break naive parsers in it.
_AWKWARD = st.sampled_from(["\r", "\n", "\r\n", "\t", "\x0b", "\x0c", "\x00", "\u2028",
                            "\u202e", "\ufeff", "\u00a0", ":", "::", ">", "=?", "?=", "--",
                            "\uff1a", "\u017f", "\u212a", "\u0130", "\u0131", "\u00df",
                            "\ufb01", "\u0661", "\u00b2", "\u2167", "\u0301", "\U0001f600"])
TEXT = st.lists(st.one_of(st.text(max_size=12), _AWKWARD), max_size=8).map("".join)
SPACE = st.sampled_from(["", " ", "  ", "\t", " \t ", "\u00a0", "\u3000"])


def _spell(label: str) -> st.SearchStrategy[str]:
    """A label as someone might type it: any case, dots and dashes, odd spaces."""
    return st.tuples(st.sampled_from([str.lower, str.upper, str.title, str]),
                     st.sampled_from(["", ".", "-", "*", "**"])).map(
        lambda t: t[1] + t[0](label) + t[1])


def _line(labels: list[str], values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    label = st.one_of(st.sampled_from(labels).flatmap(_spell), TEXT)
    return st.tuples(SPACE, label, SPACE, st.sampled_from([":", ": ", " :", "-", "="]), SPACE,
                     values).map("".join)


def _document(labels: list[str], values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    line = st.one_of(_line(labels, values), TEXT, st.just(""), st.just("> quoted: line"))
    newline = st.sampled_from(["\n", "\r\n", "\r", "\n\n"])
    return st.lists(st.tuples(line, newline).map("".join), max_size=25).map("".join)


# Letters that a case-insensitive regex matches to an ASCII letter although lower() does not
# make them that letter: long s, Kelvin sign, dotted capital I, dotless i.
_FOLDS = {"s": "\u017f", "k": "\u212a", "i": "\u0130", "I": "\u0131"}
_MONTH_NAMES = ["jan", "February", "MAR", "apr.", "may", "june", "jul", "August", "sept",
                "september", "Oct", "nov", "december"]


@st.composite
def _month_name(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(_MONTH_NAMES))
    return "".join(_FOLDS[c] if c in _FOLDS and draw(st.booleans()) else c for c in name)


_NAMED_DATES = st.tuples(_month_name(), st.integers(1, 40), st.integers(0, 2999)).flatmap(
    lambda t: st.sampled_from([f"{t[0]} {t[1]}, {t[2]}", f"{t[1]} {t[0]} {t[2]}",
                               f"{t[2]:04d} {t[0]} {t[1]}"]))
DATES = st.one_of(_NAMED_DATES, st.dates().map(str),
                  st.dates().map(lambda d: d.strftime("%d/%m/%y")),
                  st.from_regex(r"\d{1,4}[-/. ]\d{1,4}[-/. ]\d{1,6}", fullmatch=True),
                  st.sampled_from(["31/02/2020", "0/0/0", "99999999", "Feb 30 1990",
                                   "29.02.1900", "1.1.1", "12/13/2001", "2001-13-45"]))
_FORM_VALUES = st.one_of(TEXT, DATES, st.sampled_from(
    ["female", "M", "f", "other", "urgent", "routine", "stat", "yes", "no", "Y", "IV", "6",
     "VII", "type 3", "0"]))
_ANSWER_VALUES = st.one_of(TEXT, st.sampled_from(
    ["L30.0", "L30.0, l40.0; C43.9", "Z99.99999", "not needed", "same day", "urgent", "no",
     "yes - punch", "adequate", "not diagnostic", "2 weeks", ""]))
_REGISTRATION_VALUES = st.one_of(TEXT, st.from_regex(r"[0-9 -]{8,14}", fullmatch=True),
                                 st.sampled_from(["NY", "n.y.", "XX", "1234567893",
                                                  "a@b.c", "@", "x@y"]))

CASE_FORMS = _document(sorted(form.SYNONYMS) + ["Photo 1", "photo 2 caption", "IMG_0001.jpg"],
                       _FORM_VALUES)
ANSWERS = st.one_of(_document(sorted(answer.SYNONYMS) + ["Close", "More info", "Decline"],
                              _ANSWER_VALUES),
                    st.sampled_from(["Close", "close.", "More info:", "Decline", "Dx:"]))
REGISTRATIONS = _document(sorted(registration.SYNONYMS), _REGISTRATION_VALUES)


# --- MIME trees --------------------------------------------------------------------------

CHARSETS = st.sampled_from(["utf-8", "UTF-8", "us-ascii", "iso-8859-1", "windows-1252",
                            "latin_1", "koi8-r", "shift_jis", "gb2312", "big5", "utf-16",
                            "utf-7", "utf-32", "x-unknown", "", "unicode-1-1-utf-7",
                            "iso-2022-jp", "cp1255", "ks_c_5601-1987", "\u00e9", "utf-8'"])
ENCODINGS = st.sampled_from(["7bit", "8bit", "binary", "base64", "quoted-printable",
                             "x-uuencode", "BASE64", "bogus", ""])
FILENAMES = st.one_of(TEXT, st.sampled_from([
    "../../etc/passwd", "C:\\temp\\x.jpg", "photo\u202egpj.exe", "=?utf-8?b?cGhvdG8uanBn?=",
    "=?iso-8859-1?q?caf=E9.png?=", "=?bogus?x?zz?=", "winmail.dat", "a" * 300 + ".jpg", ".",
    "\u0000", "IMG 0001.HEIC", "rash.jpg"]))


def _tiny_image(kind: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (3, 2), (200, 120, 90)).save(out, kind)
    return out.getvalue()


_IMAGES = [_tiny_image("JPEG"), _tiny_image("PNG"), _tiny_image("GIF")]
PAYLOADS = st.one_of(
    st.binary(max_size=300),
    TEXT.map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.sampled_from(_IMAGES),
    st.tuples(st.sampled_from(_IMAGES), st.integers(0, 200)).map(lambda t: t[0][: t[1]]),
    st.sampled_from([b"\x78\x9f\x3e\x22", b"<html><body><p>Hi<br>there</body>",
                     b'<meta charset="koi8-r"><p>\xf0\xd2\xc9', b"begin 644 x\n#86)C\n`\nend\n"]),
)
LEAF_TYPES = st.sampled_from(["text/plain", "text/html", "image/jpeg", "image/png",
                              "image/heic", "application/octet-stream", "application/ms-tnef",
                              "application/pdf", "message/delivery-status", "text/rfc822-headers",
                              "application/pgp-signature", "text/calendar", "x/y", "", "text"])
MULTIPART = st.sampled_from(["mixed", "alternative", "related", "report", "signed", "digest",
                             "x-weird"])


def _transfer(data: bytes, encoding: str) -> str:
    """The payload as the transfer encoding writes it; raw bytes ride as surrogate escapes."""
    lowered = encoding.lower()
    if lowered == "base64":
        return base64.encodebytes(data).decode("ascii")
    if lowered == "quoted-printable":
        return quopri.encodestring(data).decode("ascii")
    return data.decode("ascii", "surrogateescape")


def _header_value(value: str) -> str:
    """Any text as one header line (the generator would refuse some as they are)."""
    raw = value.encode("utf-8", "surrogatepass").decode("ascii", "surrogateescape")
    return " ".join(raw.splitlines())  # CR, LF, VT, FF, FS..RS: the writer sees a new header


@st.composite
def leaf(draw: st.DrawFn) -> Message:
    part = Message()
    ctype = draw(LEAF_TYPES)
    if ctype:
        part["Content-Type"] = ctype
        charset = draw(CHARSETS)
        if charset and draw(st.booleans()):
            part.set_param("charset", charset)
        if ctype.startswith("text/plain") and draw(st.booleans()):
            part.set_param("format", "flowed")
            part.set_param("delsp", draw(st.sampled_from(["yes", "no"])))
    encoding = draw(ENCODINGS)
    if encoding:
        part["Content-Transfer-Encoding"] = encoding
    disposition = draw(st.sampled_from(["", "attachment", "inline", "bogus"]))
    if disposition:
        name = draw(FILENAMES)
        if draw(st.booleans()):  # RFC 2231, possibly with a charset Python does not know
            encoded = quote(name.encode("utf-8", "surrogatepass"), safe="")
            param = f"filename*={draw(CHARSETS) or 'utf-8'}''{encoded}"
        else:  # as written, quotes and raw 8-bit bytes included
            param = f'filename="{_header_value(name)}"'
        part["Content-Disposition"] = f"{disposition}; {param}"
    if draw(st.booleans()):
        part["Content-ID"] = _header_value(draw(TEXT))
        part["Content-Description"] = _header_value(draw(TEXT))
    part.set_payload(_transfer(draw(PAYLOADS), encoding))
    return part


HEADER_NAMES = st.sampled_from(["From", "To", "Cc", "Subject", "Date", "Message-ID",
                                "In-Reply-To", "References", "Auto-Submitted", "Precedence",
                                "List-Id", "Reply-To", "Return-Path", "X-Autoreply",
                                "Authentication-Results", "X-Mailer", "Content-Type"])
HEADER_VALUES = st.one_of(TEXT, st.sampled_from([
    "Dr A <dr.a@clinic.test>", "=?utf-8?b?w6nDqQ==?= <x@y>", "=?utf-8?q?a=ZZ?=", "<>",
    "undisclosed-recipients:;", "a@b, c@d,, ,", "Mon, 32 Foo 2020 25:61:61 +9999",
    "Tue, 1 Jan 1980 00:00:00 -0000", "<a@b> <c@d>", "auto-replied", "bulk", "\"quoted, name\"",
    "x; spf=pass smtp.mailfrom=a@b", "=?x-unknown?b?AAAA?="]))


def _headers(draw: st.DrawFn, msg: Message) -> None:
    for name, value in draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=8)):
        if name == "Content-Type":
            continue  # the tree decides it
        msg[name] = _header_value(value)


class _Writer(BytesGenerator):
    """Writes any leaf as the text it holds: the stdlib's writer wants a list of parts under
    message/delivery-status, and the point here is to send parsers what senders send."""

    def _dispatch(self, msg: Message) -> None:
        if isinstance(msg._payload, str):  # noqa: SLF001 - what set_payload stored
            self._handle_text(msg)
        else:
            super()._dispatch(msg)


def _tree(depth: int) -> st.SearchStrategy[Message]:
    if depth == 0:
        return leaf()
    return st.one_of(leaf(), _multipart(depth), _forwarded(depth))


@st.composite
def _multipart(draw: st.DrawFn, depth: int) -> Message:
    msg = Message()
    msg["Content-Type"] = "multipart/" + draw(MULTIPART)
    boundary = draw(st.sampled_from(["b1", "=_x=", "a" * 70, "--", "b 2", f"n{depth}"]))
    msg.set_param("boundary", boundary)
    children = draw(st.lists(_tree(depth - 1), max_size=4))
    msg.set_payload(children)
    if draw(st.booleans()):
        msg.preamble = "This is a multi-part message in MIME format."
    return msg


@st.composite
def _forwarded(draw: st.DrawFn, depth: int) -> Message:
    msg = Message()
    msg["Content-Type"] = "message/rfc822"
    inner = draw(_tree(depth - 1))
    _headers(draw, inner)
    msg.set_payload([inner])
    return msg


@st.composite
def messages(draw: st.DrawFn, max_depth: int = 3) -> bytes:
    """A whole message as the wire carries it."""
    msg = draw(_tree(max_depth))
    _headers(draw, msg)
    if "MIME-Version" not in msg and draw(st.booleans()):
        msg["MIME-Version"] = "1.0"
    out = io.BytesIO()
    _Writer(out, mangle_from_=False).flatten(msg)
    raw = out.getvalue()
    return raw if draw(st.booleans()) else raw.replace(b"\n", b"\r\n")
