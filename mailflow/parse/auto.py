"""Is this message from a machine? Answering one of those is how mail loops start."""

from __future__ import annotations

import re

from mailflow.parse.headers import clean_addr_spec, parse_addresses
from mailflow.parse.types import ParsedMessage

_ROBOT_LOCAL_PARTS = {
    "mailer-daemon",
    "postmaster",
    "noreply",
    "no-reply",
    "no_reply",
    "donotreply",
    "do-not-reply",
    "do_not_reply",
}
_BULK_PRECEDENCE = {"bulk", "list", "junk", "auto_reply"}
_AUTO_HEADERS = ("x-autoreply", "x-autorespond", "x-mail-autoreply")
_AUTO_SUBJECT = re.compile(
    r"^\s*(out of office|automatic reply|auto:|autoreply|auto-reply|undeliverable|"
    r"undelivered mail|delivery status notification|mail delivery failed|"
    r"returned mail:|delivery failure)",
    re.IGNORECASE,
)
_TOKEN = re.compile(r"[a-z0-9_-]+")


def _local_part(addr: str) -> str:
    return addr.rsplit("@", 1)[0].split("+", 1)[0].lower() if addr else ""


def _is_robot(addr: str) -> bool:
    return _local_part(addr) in _ROBOT_LOCAL_PARTS


def _first_token(value: str) -> str:
    match = _TOKEN.match(value.strip().lower())
    return match.group(0) if match else ""


def automatic_reason(msg: ParsedMessage, envelope_from: str) -> str:
    """A short reason why this message is automatic, or "" for a person's message.

    `envelope_from` is the SMTP MAIL FROM (for IMAP: the Return-Path header); an empty
    one ("" or "<>") marks a bounce, so callers must not pass "" when they do not know it.
    """
    auto_submitted = _first_token(msg.auto_submitted)
    if auto_submitted and auto_submitted != "no":
        return f"it says Auto-Submitted: {auto_submitted}"
    precedence = _first_token(msg.precedence)
    if precedence in _BULK_PRECEDENCE:
        return f"it says Precedence: {precedence}"
    if msg.list_id:
        return "it comes from a mailing list (List-Id)"
    envelope = envelope_from.strip()
    if envelope in ("", "<>"):
        return "it has an empty envelope sender (a bounce)"
    if _is_robot(clean_addr_spec(envelope)) or _is_robot(envelope.strip("<>")):
        return f"it was sent by {_local_part(envelope.strip('<>'))}"
    for addr in _from_addresses(msg):
        if _is_robot(addr):
            return f"it is from {_local_part(addr)}"
    if msg.content_type in ("multipart/report", "message/delivery-status"):
        return f"it is a delivery or read report ({msg.content_type})"
    for name, _ in msg.headers:
        if name.lower().startswith(_AUTO_HEADERS):
            return f"it carries the {name} header"
    match = _AUTO_SUBJECT.match(msg.subject)
    if match:
        return f"its subject starts with {match.group(1)!r}"
    return ""


def _from_addresses(msg: ParsedMessage) -> list[str]:
    """From as parsed, plus a bare "MAILER-DAEMON" that has no domain to be parsed."""
    found = [msg.from_addr] if msg.from_addr else []
    for name, value in msg.headers:
        if name.lower() != "from":
            continue
        if "@" in value:
            found.extend(addr for _, addr in parse_addresses(value, []) if addr)
        else:
            found.extend(word.strip("<>\"'") for word in value.split())
    return found
