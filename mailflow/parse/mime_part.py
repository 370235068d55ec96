"""Reading one MIME part without trusting it: its header fields, its payload, its text.

Header fields are read with policy.default, and again with compat32 when that one chokes. The
payload is decoded by its transfer encoding (damaged base64 too) and counted against the
message's decoded-size limit; a text part becomes str through its charset, its HTML or its
format=flowed.
"""

from __future__ import annotations

import binascii
import email.policy
import re
from collections.abc import Callable
from email.message import Message
from typing import TypeVar

from mailflow.parse.charset import decode_bytes
from mailflow.parse.filenames import has_encoded_words
from mailflow.parse.headers import decode_header_value
from mailflow.parse.htmltext import html_to_text, meta_charset, tidy_text, unflow
from mailflow.parse.types import MimeLimits, ParseRejected

T = TypeVar("T")

_UUENCODE = {"x-uuencode", "uuencode", "uue", "x-uue"}
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")
_MB = 1024 * 1024


# --- header access on parts: policy.default first, compat32 when it chokes ---------------


def read(part: Message, getter: Callable[[Message], T], default: T) -> T:
    """getter(part), with compat32 when policy.default chokes; default when both do."""
    try:
        return getter(part)
    except Exception:  # policy.default header parsing on broken input
        saved = part.policy
        part.policy = email.policy.compat32
        try:
            return getter(part)
        except Exception:  # unreadable either way: use the default
            return default
        finally:
            part.policy = saved


def raw_header(part: Message, name: str) -> str:
    """The first raw value of a header, "" when absent (raw_items never parses)."""
    lowered = name.lower()
    for key, value in part.raw_items():
        if key.lower() == lowered:
            return str(value)
    return ""


def content_type(part: Message) -> str:
    return read(part, lambda p: p.get_content_type(), "text/plain").lower()


def param(part: Message, name: str) -> str:
    value = read(part, lambda p: p.get_param(name), None)
    return value if isinstance(value, str) else ""


def filename_of(part: Message, defects: list[str]) -> str:
    name = read(part, lambda p: p.get_filename(), None)
    if not isinstance(name, str):
        return ""
    if has_encoded_words(name):  # RFC 2047 inside a parameter: wrong, but common
        name = decode_header_value(name, defects)
    return name.strip()  # safe_filename removes what is unsafe


# --- contents -------------------------------------------------------------------------------


class PartReader:
    """Decodes the parts of one message, adding up their decoded size against the limit."""

    def __init__(self, limits: MimeLimits, defects: list[str]) -> None:
        self.limits = limits
        self.defects = defects
        self.decoded = 0

    def text(self, part: Message, subtype: str) -> str:
        """A text/plain or text/html part as readable text."""
        data = self.payload(part)
        charset = read(part, lambda p: p.get_content_charset(), None) or ""
        if subtype == "html":
            markup = decode_bytes(data, charset or meta_charset(data), self.defects)
            return html_to_text(markup, self.defects)
        text = decode_bytes(data, charset, self.defects)
        if param(part, "format").lower() == "flowed":
            text = unflow(text.replace("\r\n", "\n"), param(part, "delsp").lower() == "yes")
        return tidy_text(text)

    def payload(self, part: Message) -> bytes:
        """The part's decoded bytes, decoded once, counted against the decoded-size limit."""
        # The stored payload, not get_payload(): that one decodes 8-bit content with
        # errors="replace" (lossy for binary parts) and does not know "base64;" as base64.
        payload = getattr(part, "_payload", None)
        if isinstance(payload, bytes):
            raw = payload
        elif isinstance(payload, str):
            # message_from_bytes keeps 8-bit bytes as surrogate escapes: this is lossless.
            raw = payload.encode("ascii", errors="surrogateescape")
        else:
            raw = b""
        cte = raw_header(part, "Content-Transfer-Encoding")
        cte = cte.strip().split(";", 1)[0].strip().strip("\"'").lower()
        if cte == "base64":
            data = self._base64(raw)
        elif cte == "quoted-printable":
            data = binascii.a2b_qp(raw)
        elif cte in _UUENCODE:
            decoded = read(part, lambda p: p.get_payload(decode=True), b"")
            data = decoded if isinstance(decoded, bytes) else b""
        else:
            data = raw
        self.decoded += len(data)
        if self.decoded > self.limits.max_decoded_bytes:
            raise ParseRejected(
                "too-large",
                f"The message's contents decode to more than "
                f"{self.limits.max_decoded_bytes / _MB:.1f} MB; "
                f"the limit is {self.limits.max_decoded_bytes / _MB:.1f} MB.",
            )
        return data

    def _base64(self, raw: bytes) -> bytes:
        try:
            return binascii.a2b_base64(raw)  # skips line breaks and stray characters
        except binascii.Error:
            self.defects.append("damaged base64 content; decoded what was readable")
            clean = _B64_JUNK.sub(b"", raw)
            clean = clean[: len(clean) - (len(clean) % 4 == 1)]
            return binascii.a2b_base64(clean + b"=" * (-len(clean) % 4))
