"""Header values: RFC 2047 decoding, single-line cleaning, message ids, addresses.

Written against raw header text rather than the stdlib's header objects so that a broken
header degrades to readable text instead of raising.
"""

from __future__ import annotations

import binascii
import re
from email.utils import getaddresses

from mailflow.parse.charset import decode_bytes, normalize_label, unescape_surrogates

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
# C0/C1 controls (CR, LF, TAB, NUL...) and Unicode line separators: a header value that
# keeps any of these could inject headers into mail we compose from it.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r"\s+")
_MSG_ID = re.compile(r"<[^<>\s]+>")
_ADDR_SPEC = re.compile(r"^[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+$")


def single_line(value: str) -> str:
    """Collapse a value to one line: no CR/LF or other control characters, single spaces."""
    return _SPACES.sub(" ", _CONTROLS.sub(" ", value)).strip()


def unfold(raw: str) -> str:
    return _FOLD.sub("", raw)


def _word_bytes(encoding: str, payload: str) -> bytes | None:
    data = payload.encode("ascii", errors="replace")
    try:
        if encoding in "qQ":
            return binascii.a2b_qp(data, header=True)
        # Senders drop padding often enough that a missing "=" is not worth rejecting.
        data += b"=" * (-len(data) % 4)
        return binascii.a2b_base64(data)
    except binascii.Error:
        try:
            return binascii.a2b_base64(data[: len(data) // 4 * 4])
        except binascii.Error:
            return None


def decode_header_value(raw: str, defects: list[str]) -> str:
    """Decode RFC 2047 encoded words and raw 8-bit text in one header value.

    Adjacent encoded words in the same charset are joined as bytes before decoding,
    because mailers split multi-byte characters across words.
    """
    text = unfold(raw)
    out: list[str] = []
    pending = bytearray()
    pending_charset = ""

    def flush() -> None:
        nonlocal pending, pending_charset
        if pending:
            out.append(decode_bytes(bytes(pending), pending_charset, defects))
        pending = bytearray()
        pending_charset = ""

    pos = 0
    last_was_word = False
    for match in _ENCODED_WORD.finditer(text):
        between = text[pos : match.start()]
        # RFC 2047 6.2: whitespace between two encoded words is not part of the text.
        if between and not (last_was_word and between.isspace()):
            flush()
            out.append(unescape_surrogates(between))
        charset = normalize_label(match.group(1).split("*", 1)[0])
        data = _word_bytes(match.group(2), match.group(3))
        if data is None:
            flush()
            defects.append("undecodable encoded word in a header")
            out.append(match.group(0))
            last_was_word = False
        else:
            if pending and charset != pending_charset:
                flush()
            pending_charset = charset
            pending += data
            last_was_word = True
        pos = match.end()
    flush()
    out.append(unescape_surrogates(text[pos:]))
    return "".join(out)


def message_ids(raw: str) -> tuple[str, ...]:
    """All "<...>" ids in a Message-ID / In-Reply-To / References value, in order, unique."""
    found = _MSG_ID.findall(single_line(unfold(raw)))
    return tuple(dict.fromkeys(found))


def message_id(raw: str) -> str:
    ids = message_ids(raw)
    if ids:
        return ids[0]
    bare = "".join(single_line(raw).split()).strip("<>")
    return f"<{bare}>" if bare else ""


def clean_addr_spec(addr: str) -> str:
    """A lower-cased addr-spec, or "" when it does not look like one."""
    addr = single_line(addr).strip("<>").strip().lower()
    return addr if _ADDR_SPEC.match(addr) else ""


def parse_addresses(raw: str, defects: list[str]) -> list[tuple[str, str]]:
    """(display name, addr-spec) pairs from a raw address header; addr may be "".

    Split on the raw text, then decode each display name: decoding first would let an
    encoded comma ("Testpatient, Jane") split one address in two.
    """
    try:
        parsed = getaddresses([unfold(raw)])
    except Exception:  # stdlib parser on hostile input: degrade to nothing
        defects.append("unreadable address header")
        parsed = []
    return [
        (single_line(decode_header_value(name, defects)), clean_addr_spec(addr))
        for name, addr in parsed
    ]
