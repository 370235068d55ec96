"""The walk over a MIME tree: which parts are the message's text, which are its files.

multipart/alternative prefers the plain text; a forwarded message (message/rfc822) is read
inline under FORWARD_MARKER with its headers; signatures, delivery reports and encrypted
content are no text and no file. Files go to parse.mime_attach, payloads are decoded by
parse.mime_part.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message

from mailflow.parse.headers import decode_header_value, single_line
from mailflow.parse.mime_attach import Attachments
from mailflow.parse.mime_part import PartReader, content_type, filename_of, raw_header, read
from mailflow.parse.mime_tree import children
from mailflow.parse.types import MimeLimits
from mailflow.parse.winmail import is_tnef

FORWARD_MARKER = "---------- Forwarded message ----------"
_SIGNATURES = {
    "application/pgp-signature",
    "application/pkcs7-signature",
    "application/x-pkcs7-signature",
}
# Machine reports inside multipart/report: not a body, not a file.
_REPORTS = {
    "message/delivery-status",
    "message/global-delivery-status",
    "message/disposition-notification",
    "message/feedback-report",
}


@dataclass(frozen=True)
class Body:
    kind: str  # "plain" | "html" | "" (nothing readable)
    text: str


_EMPTY = Body("", "")


class Walker:
    """Walks one message once; its files and winmail.dat texts are in `found` afterwards."""

    def __init__(self, limits: MimeLimits, defects: list[str]) -> None:
        self.defects = defects
        self.reader = PartReader(limits, defects)
        self.found = Attachments(limits, defects, self.reader)

    def walk(self, part: Message, depth: int, want_text: bool) -> Body:
        ctype = content_type(part)
        maintype = ctype.split("/", 1)[0]
        if ctype == "multipart/encrypted" or ctype == "application/pgp-encrypted":
            self.defects.append("the message is encrypted (PGP/MIME); its text cannot be read")
            return _EMPTY
        if part.is_multipart():
            if ctype in _REPORTS:
                return _EMPTY
            if maintype == "message":
                return self._forwarded(part, depth, want_text)
            if ctype == "multipart/alternative":
                return self._alternative(part, depth, want_text)
            bodies = [self.walk(child, depth + 1, want_text) for child in children(part)]
            return _join(bodies)
        return self._leaf(part, ctype, want_text)

    def _alternative(self, part: Message, depth: int, want_text: bool) -> Body:
        options = children(part)
        # Prefer the plain alternative; the others are still walked for their images
        # (photos pasted into HTML mail live in multipart/related), but not converted.
        plain = next((c for c in options if content_type(c) == "text/plain"), None)
        plain_body = self.walk(plain, depth + 1, want_text) if plain is not None else None
        convert = want_text and (plain_body is None or not plain_body.text.strip())
        bodies = [
            plain_body if child is plain and plain_body else self.walk(child, depth + 1, convert)
            for child in options
        ]
        readable = [b for b in bodies if b.text.strip()]
        plains = [b for b in readable if b.kind == "plain"]
        if plains:
            return plains[0]
        return readable[-1] if readable else _EMPTY  # RFC 2046: the last is the richest

    def _forwarded(self, part: Message, depth: int, want_text: bool) -> Body:
        inner = children(part)
        if not inner:
            return _EMPTY
        message = inner[0]
        body = self.walk(message, depth + 1, want_text)
        lines = [FORWARD_MARKER]
        for name in ("From", "Date", "Subject", "To"):
            raw = raw_header(message, name)
            if raw:
                lines.append(f"{name}: {single_line(decode_header_value(raw, self.defects))}")
        if len(lines) == 1 and not body.text:
            return _EMPTY
        return Body("plain", "\n".join(lines) + "\n\n" + body.text)

    def _leaf(self, part: Message, ctype: str, want_text: bool) -> Body:
        if ctype in _SIGNATURES:
            return _EMPTY
        maintype, _, subtype = ctype.partition("/")
        filename = filename_of(part, self.defects)
        disposition = read(part, lambda p: p.get_content_disposition(), None) or ""
        if is_tnef(ctype, filename):
            self.found.tnef(part, ctype, filename)
            return _EMPTY
        if maintype == "multipart":  # a multipart whose boundary never came: read as text
            self.defects.append(f"{ctype} without its boundary; read as text")
            ctype, maintype, subtype = "text/plain", "text", "plain"
        is_body = subtype in ("plain", "html") and maintype == "text"
        if is_body and not filename and disposition != "attachment":
            return self._text(part, subtype, want_text)
        if (
            filename
            or maintype == "image"
            or ctype == "application/octet-stream"
            or (disposition == "attachment")
        ):
            if ctype == "application/pkcs7-mime":
                self.defects.append("S/MIME content (application/pkcs7-mime) is not read here")
            self.found.attach(part, ctype, filename, disposition)
        return _EMPTY

    def _text(self, part: Message, subtype: str, want_text: bool) -> Body:
        if not want_text:
            return Body(subtype, "")
        return Body(subtype, self.reader.text(part, subtype))  # "plain" or "html"


def _join(bodies: list[Body]) -> Body:
    readable = [b for b in bodies if b.text.strip()]
    if not readable:
        return Body(bodies[0].kind if bodies else "", "")
    kind = "plain" if any(b.kind == "plain" for b in readable) else readable[0].kind
    return Body(kind, "\n\n".join(b.text for b in readable))
