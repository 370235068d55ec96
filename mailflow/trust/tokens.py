"""One-time, expiring set-password links, with no table to keep.

The token carries the account id and an expiry, signed (HMAC) together with the account's
current password hash. Setting the password changes that hash, so a used link no longer
verifies; an expired one is refused by its own date.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from datetime import UTC, datetime, timedelta


class TokenError(Exception):
    pass


def _mac(key: bytes, account_id: int, expires: int, password_hash: str | None) -> bytes:
    msg = struct.pack(">QQ", account_id, expires) + (password_hash or "").encode()
    return hmac.new(key, msg, hashlib.sha256).digest()[:20]


def make(key: bytes, account_id: int, password_hash: str | None, now: datetime,
         valid: timedelta) -> str:
    expires = int((now + valid).timestamp())
    body = struct.pack(">QQ", account_id, expires) + _mac(key, account_id, expires, password_hash)
    return base64.urlsafe_b64encode(body).decode().rstrip("=")


def account_of(token: str) -> int:
    """The account a token names (not yet verified: look it up, then call verify)."""
    try:
        body = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        account_id, _expires = struct.unpack(">QQ", body[:16])
    except (ValueError, struct.error) as exc:
        raise TokenError("this link is not valid") from exc
    return int(account_id)


def verify(key: bytes, token: str, account_id: int, password_hash: str | None,
           now: datetime) -> None:
    try:
        body = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        token_account, expires = struct.unpack(">QQ", body[:16])
    except (ValueError, struct.error) as exc:
        raise TokenError("this link is not valid") from exc
    if token_account != account_id or not hmac.compare_digest(
            body[16:], _mac(key, account_id, expires, password_hash)):
        raise TokenError("this link is not valid, or it was already used")
    if now.astimezone(UTC).timestamp() > expires:
        raise TokenError("this link has expired; ask an admin for a new one")
