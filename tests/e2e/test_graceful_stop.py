"""Issue #13 item 3's graceful stop: SIGTERM to `mailflow smtpd` finishes the message in hand
(its DATA completes with 250 and is spooled) while new connections and new MAILs are answered
`421 4.3.2`; then the process exits."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import subprocess
import sys

from mailflow.app import App
from mailflow.config import Config
from mailflow.db.models import MessageStatus
from tests.conftest import PASSWORD
from tests.support.cases import CASES, three_photos
from tests.support.db import accepted_id, message
from tests.support.mail import FULL_FORM, case_email, client_context, wait_until
from tests.support.sink import free_port


def signed_in(port: int, user: str) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", port, timeout=30)
    smtp.ehlo("client.test")
    smtp.starttls(context=client_context())
    smtp.ehlo("client.test")
    smtp.login(user, PASSWORD)
    return smtp


def greeting(port: int) -> tuple[int, str] | None:
    """What a new connection is told first (None: nothing listens)."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.quit()
            return 220, ""
    except smtplib.SMTPConnectError as exc:
        return exc.smtp_code, exc.smtp_error.decode()
    except (ConnectionError, smtplib.SMTPServerDisconnected):
        return None


def test_sigterm_finishes_the_message_in_hand_and_turns_new_senders_away(
    app: App, config: Config, provider: str
) -> None:
    port = free_port()
    log = config.base_dir / "smtpd.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailflow", "--config", str(config.base_dir / "config.toml"),
             "smtpd"],
            env={**os.environ, "MAILFLOW_SMTP__PORT": str(port)}, stdout=out, stderr=out)
    try:
        wait_until(lambda: "SMTP submission" in log.read_text(), 30, "smtpd to start")
        raw = re.sub(rb"(?<!\r)\n", b"\r\n",
                     case_email(provider, CASES, FULL_FORM, three_photos()).as_bytes())
        in_hand = signed_in(port, provider)
        in_hand.mail(provider)
        in_hand.rcpt(CASES)
        in_hand.putcmd("data")
        assert in_hand.getreply()[0] == 354
        in_hand.send(raw[: len(raw) // 2])  # half the message is on its way ...
        idle = signed_in(port, provider)  # ... and another client is between messages

        proc.send_signal(signal.SIGTERM)
        code, text = wait_until(lambda: (g := greeting(port)) and g[0] != 220 and g, 30,
                                "new connections to be turned away")
        assert code == 421 and text.startswith("4.3.2"), text  # not refused: told to retry
        code, reply = idle.mail(provider)
        assert code == 421 and reply.startswith(b"4.3.2"), reply
        assert proc.poll() is None  # still running: the message in hand holds the stop

        in_hand.send(raw[len(raw) // 2:] + b"\r\n.\r\n")
        code, reply = in_hand.getreply()
        assert code == 250, reply
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    spooled = message(app, accepted_id(reply))  # durable: in the database, waiting for a worker
    assert spooled.status == MessageStatus.RECEIVED
    assert greeting(port) is None
