"""One raw message to a ParsedMessage: a MIME walk with limits that never trusts the sender.

The stdlib parses the structure; everything read from it afterwards (payloads, charsets,
headers) is decoded here with fallbacks, because real mail breaks every rule at least once.
"""

from __future__ import annotations

import binascii
import email
import email.policy
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.errors import StartBoundaryNotFoundDefect
from email.message import Message
from email.utils import parsedate_to_datetime
from typing import TypeVar

from mailflow.parse.charset import decode_bytes
from mailflow.parse.filenames import guess_type, has_encoded_words, safe_filename
from mailflow.parse.headers import (
    decode_header_value,
    message_id,
    message_ids,
    parse_addresses,
    single_line,
)
from mailflow.parse.htmltext import html_to_text, meta_charset, tidy_text, unflow
from mailflow.parse.types import Attachment, MimeLimits, ParsedMessage, ParseRejected
from mailflow.parse.winmail import is_tnef, read_tnef

T = TypeVar("T")

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
_UUENCODE = {"x-uuencode", "uuencode", "uue", "x-uue"}
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")
_MB = 1024 * 1024


@dataclass(frozen=True)
class _Body:
    kind: str  # "plain" | "html" | "" (nothing readable)
    text: str


_EMPTY = _Body("", "")


def parse_message(raw: bytes, limits: MimeLimits = MimeLimits()) -> ParsedMessage:
    """Parse one message. Raises ParseRejected (and nothing else) when a limit is exceeded
    or the bytes cannot be read as mail at all."""
    _precheck(raw, limits)
    defects: list[str] = []
    msg = _parse(raw, email.policy.default, limits)
    lost = _lost_boundaries(msg) if msg is not None else 0
    if msg is None or lost:
        # compat32 reads headers policy.default chokes on, and some boundaries it cannot
        # find (an unquoted "=" in them).
        legacy = _parse(raw, email.policy.compat32, limits)
        if legacy is not None and (msg is None or _lost_boundaries(legacy) < lost):
            msg = legacy
            defects.append("MIME structure read with the lenient legacy parser")
    if msg is None:
        raise ParseRejected("unreadable", "The message could not be read as email at all.")
    defects[:0] = _check_structure(msg, limits)
    walker = _Walker(limits, defects)
    body = walker.walk(msg, 0, want_text=True)
    text = body.text or "\n\n".join(t for t in walker.tnef_texts if t)
    return _assemble(msg, text, tuple(walker.attachments), defects)


def _precheck(raw: bytes, limits: MimeLimits) -> None:
    """Refuse, before the stdlib parses, what would make it spend seconds.

    The stdlib parser costs ~45 us per MIME part (100,000 empty parts in 1 MB take 5 s) and
    deep nesting costs it more still. Every part and every level needs a "--boundary" line,
    so a few thousand such lines are refused here; the exact limits are checked on the tree.
    Counting one byte is ~3 ms for 10 MB, and base64 has no "-": the finer count of line
    starts only runs for the rare message with many dashes.
    """
    budget = 5 * limits.max_parts
    if raw.count(b"-") // 2 > budget and raw.count(b"\n--") > budget:
        raise ParseRejected(
            "too-many-parts",
            f"The message has more than {budget} MIME boundary lines; "
            f"the limit is {limits.max_parts} parts.",
        )


def _parse(raw: bytes, policy: email.policy.Policy, limits: MimeLimits) -> Message | None:
    """The stdlib's parse, or None when it fails (it parses some headers while splitting)."""
    try:
        return email.message_from_bytes(raw, policy=policy)
    except RecursionError:  # the stdlib parser recurses once per nesting level
        raise ParseRejected(
            "mime-depth",
            "The message nests MIME parts too deeply to read; "
            f"the limit is {limits.max_depth} levels.",
        ) from None
    except Exception:  # a header value the parser trips over: let the caller try another
        return None


# --- structure: limits that need no decoding, checked before any payload is touched -----


def _children(part: Message) -> list[Message]:
    payload = part.get_payload() if part.is_multipart() else None
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _lost_boundaries(msg: Message) -> int:
    lost = 0
    stack = [msg]
    while stack:
        part = stack.pop()
        lost += sum(isinstance(d, StartBoundaryNotFoundDefect) for d in part.defects)
        stack.extend(_children(part))
    return lost


def _check_structure(msg: Message, limits: MimeLimits) -> list[str]:
    """Count parts, depth and headers over the whole tree; returns the parser's defects."""
    parts = 0
    deepest = 0
    most_headers = 0
    defects: list[str] = []
    stack: list[tuple[Message, int]] = [(msg, 0)]
    while stack:  # iterative: the tree may be deeper than Python's recursion limit
        part, depth = stack.pop()
        parts += 1
        deepest = max(deepest, depth)
        most_headers = max(most_headers, len(part.keys()))
        defects.extend(f"MIME: {type(d).__name__}" for d in part.defects)
        stack.extend((child, depth + 1) for child in _children(part))
    if deepest > limits.max_depth:
        raise ParseRejected(
            "mime-depth",
            f"The message nests MIME parts {deepest} levels deep; the limit is {limits.max_depth}.",
        )
    if parts > limits.max_parts:
        raise ParseRejected(
            "too-many-parts",
            f"The message has {parts} MIME parts; the limit is {limits.max_parts}.",
        )
    if most_headers > limits.max_headers:
        raise ParseRejected(
            "too-many-headers",
            f"A part of the message has {most_headers} header fields; "
            f"the limit is {limits.max_headers}.",
        )
    return defects


# --- header access on parts: policy.default first, compat32 when it chokes ---------------


def _read(part: Message, read: Callable[[Message], T], default: T) -> T:
    try:
        return read(part)
    except Exception:  # policy.default header parsing on broken input
        saved = part.policy
        part.policy = email.policy.compat32
        try:
            return read(part)
        except Exception:  # unreadable either way: use the default
            return default
        finally:
            part.policy = saved


def _raw_header(part: Message, name: str) -> str:
    """The first raw value of a header, "" when absent (raw_items never parses)."""
    lowered = name.lower()
    for key, value in part.raw_items():
        if key.lower() == lowered:
            return str(value)
    return ""


def _content_type(part: Message) -> str:
    return _read(part, lambda p: p.get_content_type(), "text/plain").lower()


def _param(part: Message, name: str) -> str:
    value = _read(part, lambda p: p.get_param(name), None)
    return value if isinstance(value, str) else ""


# --- the walk ------------------------------------------------------------------------------


class _Walker:
    def __init__(self, limits: MimeLimits, defects: list[str]) -> None:
        self.limits = limits
        self.defects = defects
        self.attachments: list[Attachment] = []
        self.tnef_texts: list[str] = []
        self.decoded = 0

    def walk(self, part: Message, depth: int, want_text: bool) -> _Body:
        ctype = _content_type(part)
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
            bodies = [self.walk(child, depth + 1, want_text) for child in _children(part)]
            return _join(bodies)
        return self._leaf(part, ctype, want_text)

    def _alternative(self, part: Message, depth: int, want_text: bool) -> _Body:
        children = _children(part)
        # Prefer the plain alternative; the others are still walked for their images
        # (photos pasted into HTML mail live in multipart/related), but not converted.
        plain = next((c for c in children if _content_type(c) == "text/plain"), None)
        plain_body = self.walk(plain, depth + 1, want_text) if plain is not None else None
        convert = want_text and (plain_body is None or not plain_body.text.strip())
        bodies = [
            plain_body if child is plain and plain_body else self.walk(child, depth + 1, convert)
            for child in children
        ]
        readable = [b for b in bodies if b.text.strip()]
        plains = [b for b in readable if b.kind == "plain"]
        if plains:
            return plains[0]
        return readable[-1] if readable else _EMPTY  # RFC 2046: the last is the richest

    def _forwarded(self, part: Message, depth: int, want_text: bool) -> _Body:
        inner = _children(part)
        if not inner:
            return _EMPTY
        message = inner[0]
        body = self.walk(message, depth + 1, want_text)
        lines = [FORWARD_MARKER]
        for name in ("From", "Date", "Subject", "To"):
            raw = _raw_header(message, name)
            if raw:
                lines.append(f"{name}: {single_line(decode_header_value(raw, self.defects))}")
        if len(lines) == 1 and not body.text:
            return _EMPTY
        return _Body("plain", "\n".join(lines) + "\n\n" + body.text)

    def _leaf(self, part: Message, ctype: str, want_text: bool) -> _Body:
        if ctype in _SIGNATURES:
            return _EMPTY
        maintype, _, subtype = ctype.partition("/")
        filename = self._filename(part)
        disposition = _read(part, lambda p: p.get_content_disposition(), None) or ""
        if is_tnef(ctype, filename):
            self._tnef(part, ctype, filename)
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
            self._attach(part, ctype, filename, disposition)
        return _EMPTY

    def _filename(self, part: Message) -> str:
        name = _read(part, lambda p: p.get_filename(), None)
        if not isinstance(name, str):
            return ""
        if has_encoded_words(name):  # RFC 2047 inside a parameter: wrong, but common
            name = decode_header_value(name, self.defects)
        return name.strip()  # safe_filename removes what is unsafe

    def _text(self, part: Message, subtype: str, want_text: bool) -> _Body:
        if not want_text:
            return _Body(subtype, "")
        data = self._payload(part)
        charset = _read(part, lambda p: p.get_content_charset(), None) or ""
        if subtype == "html":
            markup = decode_bytes(data, charset or meta_charset(data), self.defects)
            return _Body("html", html_to_text(markup, self.defects))
        text = decode_bytes(data, charset, self.defects)
        if _param(part, "format").lower() == "flowed":
            text = unflow(text.replace("\r\n", "\n"), _param(part, "delsp").lower() == "yes")
        return _Body("plain", tidy_text(text))

    def _attach(self, part: Message, ctype: str, filename: str, disposition: str) -> None:
        content_id = single_line(_raw_header(part, "Content-ID"))
        description = single_line(
            decode_header_value(_raw_header(part, "Content-Description"), self.defects)
        )
        self._add(
            filename,
            ctype,
            self._payload(part),
            description=description,
            content_id=content_id,
            inline=disposition == "inline" or (not disposition and bool(content_id)),
        )

    def _tnef(self, part: Message, ctype: str, filename: str) -> None:
        data = self._payload(part)
        content = read_tnef(data, self.defects)
        if content is not None and not content.files and not content.text:
            self.defects.append("winmail.dat held nothing readable; kept as a file")
            content = None
        if content is None:  # unreadable: keep the blob itself, nothing is dropped
            self._add(filename or "winmail.dat", ctype, data)
            return
        for name, blob in content.files:
            self._add(name, guess_type(name), blob)
        self.tnef_texts.append(content.text)

    def _add(
        self,
        filename: str,
        ctype: str,
        data: bytes,
        description: str = "",
        content_id: str = "",
        inline: bool = False,
    ) -> None:
        if len(self.attachments) >= self.limits.max_attachments:
            raise ParseRejected(
                "too-many-attachments",
                f"The message has more than {self.limits.max_attachments} attachments; "
                f"the limit is {self.limits.max_attachments}.",
            )
        index = len(self.attachments) + 1
        self.attachments.append(
            Attachment(
                filename=safe_filename(filename, ctype, index),
                content_type=ctype,
                data=data,
                description=description,
                content_id=content_id,
                inline=inline,
            )
        )

    def _payload(self, part: Message) -> bytes:
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
        cte = _raw_header(part, "Content-Transfer-Encoding")
        cte = cte.strip().split(";", 1)[0].strip().strip("\"'").lower()
        if cte == "base64":
            data = self._base64(raw)
        elif cte == "quoted-printable":
            data = binascii.a2b_qp(raw)
        elif cte in _UUENCODE:
            decoded = _read(part, lambda p: p.get_payload(decode=True), b"")
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


def _join(bodies: list[_Body]) -> _Body:
    readable = [b for b in bodies if b.text.strip()]
    if not readable:
        return _Body(bodies[0].kind if bodies else "", "")
    kind = "plain" if any(b.kind == "plain" for b in readable) else readable[0].kind
    return _Body(kind, "\n\n".join(b.text for b in readable))


# --- the top-level headers -----------------------------------------------------------------


def _date(raw: str) -> datetime | None:
    if not raw:
        return None
    try:
        return parsedate_to_datetime(single_line(raw))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _assemble(
    msg: Message, text: str, attachments: tuple[Attachment, ...], defects: list[str]
) -> ParsedMessage:
    raw_headers = [(single_line(str(k)), str(v)) for k, v in msg.raw_items()]
    first: dict[str, str] = {}
    for name, value in raw_headers:
        first.setdefault(name.lower(), value)

    def decoded(name: str) -> str:
        return single_line(decode_header_value(first.get(name, ""), defects))

    def addresses(name: str) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for key, value in raw_headers:
            if key.lower() == name:
                found.extend(parse_addresses(value, defects))
        return found

    headers = tuple(
        (name, single_line(decode_header_value(value, defects))) for name, value in raw_headers
    )
    senders = addresses("from")
    sender = next((pair for pair in senders if pair[1]), senders[0] if senders else ("", ""))
    return ParsedMessage(
        message_id=message_id(first.get("message-id", "")),
        subject=decoded("subject"),
        from_addr=sender[1],
        from_name=sender[0],
        to_addrs=_unique_addrs(addresses("to")),
        cc_addrs=_unique_addrs(addresses("cc")),
        in_reply_to=message_ids(first.get("in-reply-to", "")),
        references=message_ids(first.get("references", "")),
        date=_date(first.get("date", "")),
        auto_submitted=decoded("auto-submitted").lower(),
        precedence=decoded("precedence").lower(),
        list_id=decoded("list-id"),
        content_type=_content_type(msg),
        text=text,
        attachments=attachments,
        defects=tuple(dict.fromkeys(defects)),
        headers=headers,
        raw_headers=tuple((name, single_line(value)) for name, value in raw_headers),
    )


def _unique_addrs(pairs: list[tuple[str, str]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(addr for _, addr in pairs if addr))
