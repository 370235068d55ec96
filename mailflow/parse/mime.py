"""One raw message to a ParsedMessage: a MIME walk with limits that never trusts the sender.

The stdlib parses the structure (with the long base64 runs lifted out while it does: see
parse.mime_hoist); everything read from it afterwards (payloads, charsets,
headers) is decoded with fallbacks, because real mail breaks every rule at least once. The
steps each have a module: parse.mime_tree (the tree's limits), parse.mime_walk (text or file),
parse.mime_part (one part's fields and contents), parse.mime_attach (files, winmail.dat).
This one parses, runs them in order, and reads the top-level headers.
"""

from __future__ import annotations

import email
import email.policy
from datetime import datetime
from email.message import Message
from email.utils import parsedate_to_datetime

from mailflow.parse.headers import (
    decode_header_value,
    message_id,
    message_ids,
    parse_addresses,
    single_line,
)
from mailflow.parse.mime_hoist import Hoisted, hoist, restore
from mailflow.parse.mime_part import content_type
from mailflow.parse.mime_tree import check_structure, lost_boundaries, precheck
from mailflow.parse.mime_walk import Walker
from mailflow.parse.types import Attachment, MimeLimits, ParsedMessage, ParseRejected


def parse_message(raw: bytes, limits: MimeLimits = MimeLimits()) -> ParsedMessage:
    """Parse one message. Raises ParseRejected (and nothing else) when a limit is exceeded
    or the bytes cannot be read as mail at all."""
    precheck(raw, limits)
    defects: list[str] = []
    hoisted = hoist(raw)
    msg = _parse(raw, hoisted, email.policy.default, limits)
    lost = lost_boundaries(msg) if msg is not None else 0
    if msg is None or lost:
        # compat32 reads headers policy.default chokes on, and some boundaries it cannot
        # find (an unquoted "=" in them).
        legacy = _parse(raw, hoisted, email.policy.compat32, limits)
        if legacy is not None and (msg is None or lost_boundaries(legacy) < lost):
            msg = legacy
            defects.append("MIME structure read with the lenient legacy parser")
    if msg is None:
        raise ParseRejected("unreadable", "The message could not be read as email at all.")
    defects[:0] = check_structure(msg, limits)
    walker = Walker(limits, defects)
    body = walker.walk(msg, 0, want_text=True)
    text = body.text or "\n\n".join(t for t in walker.found.tnef_texts if t)
    return _assemble(msg, text, tuple(walker.found.files), defects)


def _parse(raw: bytes, hoisted: Hoisted | None, policy: email.policy.Policy,
           limits: MimeLimits) -> Message | None:
    """The stdlib's parse, or None when it fails (it parses some headers while splitting).
    With the long base64 runs hoisted out when it can (parse.mime_hoist): the same tree,
    parsed at a tenth of the cost."""
    if hoisted is not None:
        msg = _stdlib_parse(hoisted.skeleton, policy, limits)
        if msg is not None and restore(msg, hoisted):
            return msg
    return _stdlib_parse(raw, policy, limits)


def _stdlib_parse(raw: bytes, policy: email.policy.Policy, limits: MimeLimits) -> Message | None:
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
        content_type=content_type(msg),
        text=text,
        attachments=attachments,
        defects=tuple(dict.fromkeys(defects)),
        headers=headers,
        raw_headers=tuple((name, single_line(value)) for name, value in raw_headers),
    )


def _unique_addrs(pairs: list[tuple[str, str]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(addr for _, addr in pairs if addr))
