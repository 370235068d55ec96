"""Signed reply addresses: case+<case>.<participant>.<mac>@DOMAIN.

The address binds a reply to one case and one participant. The MAC is a truncated HMAC-SHA256
under a key derived from the master key, so nobody can make a valid address for a case or a
person they were not sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

MAC_CHARS = 16  # 80 bits, base32


@dataclass(frozen=True)
class ReplyAddress:
    case_number: str
    participant_id: int


def _mac(key: bytes, case_number: str, participant_id: int) -> str:
    digest = hmac.new(key, f"{case_number}|{participant_id}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:MAC_CHARS]


def make(key: bytes, local: str, domain: str, case_number: str, participant_id: int) -> str:
    mac = _mac(key, case_number, participant_id)
    return f"{local}+{case_number.lower()}.{participant_id}.{mac}@{domain}"


_PATTERN = re.compile(
    r"^(?P<local>[^+@]+)\+(?P<case>derm-\d{4}-\d{6})\.(?P<pid>\d{1,12})\.(?P<mac>[a-z2-7]+)$"
)


class ReplyAddressError(Exception):
    """A case+ address that is malformed or whose signature does not verify."""


def is_reply_address(address: str, local: str, domain: str) -> bool:
    addr_local, _, addr_domain = address.lower().rpartition("@")
    return addr_domain == domain.lower() and addr_local.startswith(local.lower() + "+")


def parse(key: bytes, address: str, local: str, domain: str) -> ReplyAddress:
    addr_local, _, addr_domain = address.strip().lower().rpartition("@")
    match = _PATTERN.match(addr_local)
    if addr_domain != domain.lower() or match is None or match["local"] != local.lower():
        raise ReplyAddressError(f"{address} is not a case reply address")
    case_number = match["case"].upper()
    pid = int(match["pid"])
    if not hmac.compare_digest(match["mac"], _mac(key, case_number, pid)):
        raise ReplyAddressError(f"the signature of the reply address for {case_number} is wrong")
    return ReplyAddress(case_number, pid)
