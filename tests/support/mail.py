"""Building and sending test mail: smtplib over STARTTLS + AUTH, as a provider's client does."""

from __future__ import annotations

import functools
import re
import smtplib
import ssl
import time
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from typing import TypeVar

T = TypeVar("T")

FULL_FORM = """Patient name: Jane Testpatient
Date of birth: 1961-03-04
Sex: female
Chart/MRN: MRN-0001
Reason for referral: itchy scaly plaques on both shins, eczema or psoriasis?
Location on body: anterior lower legs, both sides
Duration: 3 months
Symptoms: itch, worse at night
Treatments tried: hydrocortisone 1% for 2 weeks, no change
Allergies: none known
Patient consent to photos: yes
Urgency: routine
"""


def case_email(
    sender: str,
    to: str,
    body: str = FULL_FORM,
    photos: Sequence[tuple[str, bytes]] = (),
    subject: str = "New consult",
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    for filename, data in photos:
        msg.add_attachment(data, maintype="image", subtype="jpeg", filename=filename)
    return msg


@functools.cache
def client_context() -> ssl.SSLContext:
    # one for the session: loading the system's CA list for each connection took 25 ms
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the test server's certificate is self-signed
    return ctx


def submit(
    port: int,
    user: str | None,
    password: str | None,
    msg: EmailMessage | bytes,
    mail_from: str | None = None,
    rcpt: Sequence[str] | None = None,
    xforward: str | None = None,
) -> tuple[int, bytes]:
    """Send one message; returns the final reply (code, text) to DATA. `xforward`: the
    attributes an MTA in front would name first (`ADDR=... HELO=...`)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
        smtp.ehlo("client.test")
        smtp.starttls(context=client_context())
        smtp.ehlo("client.test")
        if xforward is not None:
            assert smtp.docmd("XFORWARD", xforward)[0] == 250
        if user is not None and password is not None:
            smtp.login(user, password)
        if isinstance(msg, EmailMessage):
            raw = msg.as_bytes()
            mail_from = str(msg["From"]) if mail_from is None else mail_from
            rcpt = rcpt or [str(msg["To"])]
        else:
            raw = msg
        raw = re.sub(rb"(?<!\r)\n", b"\r\n", raw)  # on the wire every line ends in CRLF
        assert mail_from is not None and rcpt is not None
        code, text = smtp.mail(mail_from)
        if code != 250:
            return code, text
        for r in rcpt:
            code, text = smtp.rcpt(r)
            if code not in (250, 251):
                return code, text
        return smtp.data(raw)


def wait_until(probe: Callable[[], T | None], timeout: float = 30.0, what: str = "condition") -> T:
    """Poll until probe() returns something truthy (asynchronous processing to finish)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def reply_to(received: object, sender: str, body: str,
             photos: Sequence[tuple[str, bytes]] = ()) -> tuple[EmailMessage, str]:
    """A reply as a mail client makes it: to the Reply-To, threaded, the original quoted."""
    original = received.message  # type: ignore[attr-defined]
    address = original["Reply-To"].addresses[0].addr_spec
    quoted = "\n".join("> " + line for line in received.text.splitlines())  # type: ignore[attr-defined]
    msg = case_email(
        sender, address, f"{body}\n\nOn Mon, 2 Nov 2026 at 10:00, mailflow wrote:\n{quoted}\n",
        photos, subject=f"Re: {original['Subject']}",
        headers={"In-Reply-To": original["Message-ID"], "References": original["Message-ID"]},
    )
    return msg, address
