"""What the SMTP door shows and keeps about a connection: a cap on simultaneous connections
per client address, an idle timeout that any bytes received reset, a greeting that names only
the host, and logs that carry a case number instead of a signed reply address."""

from __future__ import annotations

import logging
import re
from collections import Counter
from typing import Any

# The greeting is "220 <host> <GREETING_WORDS>": the protocol, not the software or its version.
GREETING_WORDS = "ESMTP"
TOO_MANY_CONNECTIONS = (
    "421 4.7.0 {host} Too many connections from your address at once; "
    "please try again in a few minutes"
)
IDLE_CLOSE = "421 4.4.2 {host} Nothing received for a while; closing the connection"
SHUTTING_DOWN = "421 4.3.2 {host} Shutting down for a moment; please try again shortly"


class ConnectionCap:
    """Simultaneous connections per client address. Only the event loop's thread touches it."""

    def __init__(self, per_address: int) -> None:
        self.per_address = per_address
        self._open: Counter[str] = Counter()

    def admit(self, address: str) -> bool:
        if self._open[address] >= self.per_address:
            return False
        self._open[address] += 1
        return True

    def release(self, address: str) -> None:
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]

    def open_from(self, address: str) -> int:
        return self._open[address]


class Connections:
    """The door's open connections, for a graceful stop (SIGTERM): once `closing`, a new
    connection or a new MAIL is answered SHUTTING_DOWN, and the stop waits until no connection
    holds a message in hand (MAIL given, DATA not yet answered). Event loop thread only."""

    def __init__(self) -> None:
        self.closing = False
        self.open: set[Any] = set()  # MailflowSMTP protocols (smtp.py)

    def in_hand(self) -> int:
        return sum(1 for conn in self.open if conn.in_transaction)


def peer_address(peer: object) -> str:
    """The client's IP address from a socket's peername ("?" when the transport has none)."""
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return "?"


# case+derm-2026-000001.17.abcdefghijklmnop@domain: the participant and signature are a
# capability (whoever holds the address can write to the case as that participant).
_SIGNED_REPLY = re.compile(
    r"[^\s<>:@'\"]+\+(derm-\d{4}-\d{6})\.\d{1,12}\.[a-z2-7]+@[^\s>'\"]+", re.IGNORECASE
)


def redact_reply_addresses(text: str) -> str:
    return _SIGNED_REPLY.sub(lambda m: f"<reply to {m.group(1).upper()}>", text)


class RedactReplyAddresses(logging.Filter):
    """Rewrites signed reply addresses in a record to the case number they name. aiosmtpd logs
    every command line and recipient at INFO, and an address kept in a log file is a key to
    the case."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_reply_addresses(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True
