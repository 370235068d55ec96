"""XFORWARD, Postfix's SMTP extension: the MTA in front of the door tells which client it took
the message from, so that MX mode's SPF check asks about that client, not about the MTA.

Believed only from the addresses in `[smtp] xforward_hosts` (and only announced to them): from
anyone else it would let a sender choose the address SPF is asked about. As Postfix's
XFORWARD_README says: the first command of a transaction starts every attribute as
[UNAVAILABLE], later ones overwrite, and all is forgotten at the end of the mail transaction
(the end of DATA, or RSET), which is when aiosmtpd makes a new envelope. ADDR=[UNAVAILABLE]
means a local submission upstream (Postfix's sendmail): no client address, so no SPF.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from aiosmtpd.smtp import Envelope

from mailflow.intake.smtp_guard import peer_address

ATTRIBUTES = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")
EHLO_LINE = "250-XFORWARD " + " ".join(ATTRIBUTES)
UNAVAILABLE = "[UNAVAILABLE]"
_XTEXT = re.compile(r"\+([0-9A-F]{2})")
# RFC 1891 xtext after decoding, and the README's Note 1: printable ASCII, nothing special in
# a header, at most 255 characters
_VALUE = re.compile(r"[!-~]{1,255}")
OK = "250 2.0.0 OK"
REFUSED = "550 5.7.0 XFORWARD is not permitted from this address"
IN_TRANSACTION = "503 5.5.1 XFORWARD inside a mail transaction"
BAD = "501 5.5.4 {reason}"


@dataclass(frozen=True)
class Forwarded:
    """What the upstream MTA said about its client ("" where it said [UNAVAILABLE])."""

    addr: str = ""  # an IP address: SPF is asked about it
    helo: str = ""
    name: str = ""
    proto: str = ""
    source: str = ""  # LOCAL or REMOTE

    def describe(self) -> str:
        return self.addr or "a local submission"


class ForwardingEnvelope(Envelope):
    """aiosmtpd's envelope, with what XFORWARD said for this transaction."""

    def __init__(self) -> None:
        super().__init__()
        self.forwarded: Forwarded | None = None


def of(envelope: Envelope) -> Forwarded | None:
    return envelope.forwarded if isinstance(envelope, ForwardingEnvelope) else None


def update(current: Forwarded | None, arg: str) -> Forwarded:
    """The attributes after one `XFORWARD name=value ...`; ValueError with the reason when a
    part cannot be taken (501)."""
    pairs = arg.split()
    if not pairs:
        raise ValueError("XFORWARD needs at least one attribute=value")
    result = current or Forwarded()
    for pair in pairs:
        name, sep, encoded = pair.partition("=")
        name = name.upper()
        if not sep or name not in ATTRIBUTES:
            raise ValueError(f"unknown XFORWARD attribute {name[:20]!r}")
        value = _XTEXT.sub(lambda m: chr(int(m.group(1), 16)), encoded)
        if not _VALUE.fullmatch(value):
            raise ValueError(f"bad XFORWARD {name} value")
        if value.upper() == UNAVAILABLE:
            value = ""
        elif name == "ADDR":
            value = _address(value)
        field = {"ADDR": "addr", "HELO": "helo", "NAME": "name", "PROTO": "proto",
                 "SOURCE": "source"}.get(name)
        if field is not None:  # PORT and IDENT are taken and not kept
            result = replace(result, **{field: value})
    return result


def _address(value: str) -> str:
    text = value[5:] if value[:5].upper() == "IPV6:" else value
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError("XFORWARD ADDR is not an IP address") from None


class XforwardCommand:
    """The command, for aiosmtpd's SMTP (mixed in before it): believed from xforward_hosts."""

    xforward_hosts: frozenset[str] = frozenset()
    session: Any  # aiosmtpd's, as are these two
    envelope: Any
    push: Callable[[str], Awaitable[None]]

    @property
    def xforward_allowed(self) -> bool:
        """Whether this client is an MTA in front of the door whose XFORWARD is believed."""
        return bool(self.xforward_hosts) and peer_address(
            self.session.peer if self.session else None) in self.xforward_hosts

    def _create_envelope(self) -> Envelope:
        return ForwardingEnvelope()  # aiosmtpd makes one anew at a transaction's end and RSET

    async def smtp_XFORWARD(self, arg: str) -> None:
        envelope = self.envelope
        if not self.xforward_allowed or not isinstance(envelope, ForwardingEnvelope):
            await self.push(REFUSED)
        elif envelope.mail_from is not None:
            await self.push(IN_TRANSACTION)
        else:
            try:
                envelope.forwarded = update(envelope.forwarded, arg)
            except ValueError as exc:
                await self.push(BAD.format(reason=exc))
                return
            await self.push(OK)
