"""The acknowledgement's "add photos from your phone" link: one case, one provider, an expiry.

The token carries the case number, the provider's account id and the expiry, signed (HMAC,
the password-link key with its own label, so neither kind of link passes for the other). It
is no password: opening it still takes the provider's session or password (web/photos.py).
No table: a link is as good as its signature and its date.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_LABEL = b"mailflow case photo link v1\x00"
_NUMBER = re.compile(r"DERM-\d{4}-\d{6}")
MAC_BYTES = 20


class LinkError(Exception):
    """Why a link does not open a case; `expired` tells an old link from a bad one."""

    def __init__(self, message: str, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True)
class PhotoLink:
    case_number: str
    provider_id: int
    expires: datetime


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, _LABEL + body, hashlib.sha256).digest()[:MAC_BYTES]


def make(key: bytes, case_number: str, provider_id: int, now: datetime,
         valid: timedelta) -> str:
    expires = int((now + valid).timestamp())
    body = struct.pack(">QQ", provider_id, expires) + case_number.encode("ascii")
    return base64.urlsafe_b64encode(body + _mac(key, body)).decode().rstrip("=")


def read(key: bytes, token: str, now: datetime) -> PhotoLink:
    """The link's case and provider, if the signature holds and the date has not passed."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        provider_id, expires = struct.unpack(">QQ", body[:16])
        number = body[16:].decode("ascii")
    except (ValueError, struct.error, UnicodeDecodeError) as exc:
        raise LinkError("this link is not complete or was changed") from exc
    if len(mac) != MAC_BYTES or not _NUMBER.fullmatch(number) or not hmac.compare_digest(
            mac, _mac(key, body)):
        raise LinkError("this link is not complete or was changed")
    if now.astimezone(UTC).timestamp() > expires:
        raise LinkError("this link has expired", expired=True)
    return PhotoLink(number, int(provider_id), datetime.fromtimestamp(expires, UTC))
