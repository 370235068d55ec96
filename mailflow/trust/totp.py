"""Time-based one-time codes (RFC 6238) for a second sign-in step, with pyotp.

A code is good for its 30-second step and the one either side (clock drift), and only once:
the caller keeps the last step used per account and passes it back.
"""

from __future__ import annotations

from datetime import datetime

import pyotp

ISSUER = "mailflow"
STEP_SECONDS = 30
DRIFT_STEPS = 1


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, email: str, domain: str) -> str:
    """The otpauth:// address an authenticator app takes (as a QR code or typed in); the
    app lists it as "mailflow <domain>", so two installations are told apart."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=f"{ISSUER} {domain}")


def grouped(secret: str) -> str:
    """The secret in groups of four, for typing into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def accepted_step(secret: str, code: str, at: datetime, last_step: int) -> int | None:
    """The time step this code belongs to, or None: wrong, expired, or used already."""
    code = "".join(code.split())
    if not secret or len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    now_step = int(at.timestamp()) // STEP_SECONDS
    for step in range(now_step - DRIFT_STEPS, now_step + DRIFT_STEPS + 1):
        if step > last_step and pyotp.utils.strings_equal(totp.at(step * STEP_SECONDS), code):
            return step
    return None
