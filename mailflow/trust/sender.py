"""Who really sent this message.

Trust comes from SMTP AUTH as the account whose address is in From:, or from a trusted upstream
relay's Authentication-Results saying DKIM or DMARC passed for the From: domain. Anything else
is unverified, and unverified mail never reaches a case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailflow.config import TrustConfig
from mailflow.db.models import InboundMessage
from mailflow.parse.types import ParsedMessage


@dataclass(frozen=True)
class Verdict:
    verified: bool
    how: str  # people-readable: "SMTP AUTH as x", "DKIM pass (relay)", or why not


_RESULT = re.compile(r"\b(dkim|dmarc)=pass\b[^;]*?\bheader\.(?:d|from)=([^\s;]+)", re.IGNORECASE)


def _from_count(message: ParsedMessage) -> int:
    values = [v for name, v in message.headers if name.lower() == "from"]
    return sum(max(1, v.count("@")) for v in values)


def _relay_results(message: ParsedMessage) -> list[str]:
    """Authentication-Results our relay added: only those above the first Received header.

    Headers further down were there before the message reached the relay, so a sender could
    have written them; only the top of the header block is the relay's own word.
    """
    results = []
    for name, value in message.headers:
        lowered = name.lower()
        if lowered == "received":
            break
        if lowered == "authentication-results":
            results.append(value)
    return results


def verify(inbound: InboundMessage, message: ParsedMessage, trust: TrustConfig) -> Verdict:
    sender = message.from_addr
    if not sender:
        return Verdict(False, "the message has no readable From: address")
    if _from_count(message) > 1:
        return Verdict(False, "the message names more than one sender in From:")
    if inbound.auth_user:
        if inbound.auth_user.lower() == sender:
            return Verdict(True, f"SMTP AUTH as {inbound.auth_user}")
        return Verdict(False, f"signed in as {inbound.auth_user} but From: is another address")
    if inbound.peer in trust.trusted_relays and trust.authserv_id:
        domain = sender.rpartition("@")[2]
        for value in _relay_results(message):
            authserv, _, results = value.partition(";")
            if authserv.strip().split()[0:1] != [trust.authserv_id]:
                continue
            for method, header_domain in _RESULT.findall(results):
                if header_domain.lower().strip(".") == domain:
                    return Verdict(True, f"{method.upper()} pass reported by {trust.authserv_id}")
        return Verdict(False, "the trusted relay did not report DKIM or DMARC pass for the sender")
    return Verdict(False, "not sent with SMTP AUTH and not through a trusted relay")
