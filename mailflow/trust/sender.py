"""Who really sent this message.

Trust comes from SMTP AUTH as the account whose address is in From:, or from a trusted upstream
relay's Authentication-Results (RFC 8601) saying DMARC passed for the From: domain, or that a
DKIM signature of exactly that domain passed, or (MX mode, no trusted relay on the way) from
mailflow's own check finding a DKIM or SPF pass aligned with From: (inbound_auth.py).
Anything else is unverified, and unverified mail never reaches a case.
"""

from __future__ import annotations

from dataclasses import dataclass

import authres
from authres.core import AuthenticationResult, AuthenticationResultsHeader

from mailflow.config import TrustConfig
from mailflow.db.models import InboundMessage
from mailflow.parse.types import ParsedMessage
from mailflow.trust.inbound_auth import Checked


@dataclass(frozen=True)
class Verdict:
    verified: bool
    how: str  # people-readable: "SMTP AUTH as x", "DKIM pass (relay)", or why not


# (method, the property that names the domain it vouches for): DMARC's header.from is the From:
# domain it checked; DKIM's header.d is the signing domain, which must equal the From: domain
# (strict alignment) or a signature of the sender's own domain would vouch for any From:.
_VOUCHING = {"dmarc": ("header", "from"), "dkim": ("header", "d")}
# Real Authentication-Results run to a few hundred characters, a dozen results at most; the
# parser's time grows with the square of the length, so a longer one is left unread (no pass).
MAX_RESULTS_CHARS = 4096


def _from_count(message: ParsedMessage) -> int:
    values = [v for name, v in message.headers if name.lower() == "from"]
    return sum(max(1, v.count("@")) for v in values)


def _relay_results(message: ParsedMessage) -> list[str]:
    """Authentication-Results our relay added: only those above the first Received header.

    Headers further down were there before the message reached the relay, so a sender could
    have written them; only the top of the header block is the relay's own word. Read as
    written: decoding an encoded word would turn a sender's quoted text into results.
    """
    results = []
    for name, value in message.raw_headers:
        lowered = name.lower()
        if lowered == "received":
            break
        if lowered == "authentication-results":
            results.append(value)
    return results


def _parse(value: str) -> AuthenticationResultsHeader | None:
    """The header as RFC 8601 reads it (comments and quoted strings are values, never results),
    or None when it cannot be read at all."""
    try:
        return authres.parse_value(value)
    except Exception:  # any failure of the parser, of any kind, means: not the relay's pass
        return None


def _vouched_domains(result: AuthenticationResult, method: str) -> set[str]:
    ptype, name = _VOUCHING[method]
    return {
        str(p.value).lower().rstrip(".")
        for p in result.properties
        if str(p.type).lower() == ptype and str(p.name).lower() == name
    }


def _names_authserv(value: str, authserv_id: str) -> bool:
    first_word = value.split(";", 1)[0].split()[:1]
    return [word.lower() for word in first_word] == [authserv_id]


def _relay_pass(headers: list[str], authserv_id: str, domain: str) -> tuple[str, int]:
    """("DMARC"/"DKIM" that passed for `domain`, or ""), and how many of the relay's own
    headers could not be read (they count as no pass, and the admin is told)."""
    unreadable = 0
    for value in headers:
        if not _names_authserv(value, authserv_id):
            continue  # another server's results, or none that its id can be read from
        header = _parse(value) if len(value) <= MAX_RESULTS_CHARS else None
        if header is None or header.authserv_id != authserv_id:
            unreadable += 1
            continue
        for result in header.results:
            method = str(result.method).lower()
            if method not in _VOUCHING or str(result.result).lower() != "pass":
                continue
            # each result names its domain once; two different ones is not a pass for either
            if _vouched_domains(result, method) == {domain}:
                return method.upper(), unreadable
    return "", unreadable


def _via_relay(message: ParsedMessage, sender: str, trust: TrustConfig) -> Verdict:
    domain = sender.rpartition("@")[2].lower()
    authserv_id = trust.authserv_id.lower()
    method, unreadable = _relay_pass(_relay_results(message), authserv_id, domain)
    if method:
        return Verdict(True, f"{method} pass for {domain} reported by {trust.authserv_id}")
    why = f"{trust.authserv_id} did not report DKIM or DMARC pass for {domain}"
    if unreadable:
        why += f" ({unreadable} of its Authentication-Results headers could not be read)"
    return Verdict(False, why)


def verify(inbound: InboundMessage, message: ParsedMessage, trust: TrustConfig,
           checked: Checked | None = None) -> Verdict:
    """`checked`: mailflow's own DKIM/SPF/DMARC check, when MX mode ran it for this message."""
    sender = message.from_addr
    if not sender:
        return Verdict(False, "the message has no readable From: address")
    if _from_count(message) > 1:
        return Verdict(False, "the message names more than one sender in From:")
    if inbound.auth_user:
        if inbound.auth_user.lower() == sender:
            # the web's photo page spools as the provider signed in there (password checked)
            how = "signed in on the web as" if inbound.source == "web" else "SMTP AUTH as"
            return Verdict(True, f"{how} {inbound.auth_user}")
        return Verdict(False, f"signed in as {inbound.auth_user} but From: is another address")
    if inbound.peer in trust.trusted_relays and trust.authserv_id:
        return _via_relay(message, sender, trust)
    if checked is not None:
        return Verdict(checked.aligned, checked.how)
    return Verdict(False, "not sent with SMTP AUTH and not through a trusted relay")
