"""What the relay answers to QUIT does not change a message's fate, settled before it.

smtplib's `with SMTP(...)` raises on a QUIT answered with anything but 221: a message the relay
had taken (250 to its DATA) was then marked dead on a 5xx, or sent again on a 4xx. A relay
here answers QUIT with 554 (a relay in trouble, or a middlebox), after taking the message.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from mailflow.app import App, initialise
from mailflow.db.models import OutboundMessage, OutboxStatus
from mailflow.db.session import transaction
from mailflow.outbound.delivery import deliver_due
from mailflow.workflow import accounts
from tests.conftest import PASSWORD, make_config
from tests.support.cases import deliver
from tests.support.mail import case_email

HELP = "help@derm.localhost"
PROVIDER = "dr.family@clinic.test"


class GrumpyRelay:
    """Takes every message (250 to DATA), then answers QUIT with 554."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.taken: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as lines:
                self._session(conn, lines)

    def _session(self, conn: socket.socket, lines: object) -> None:
        conn.sendall(b"220 relay.test ESMTP\r\n")
        for line in lines:  # type: ignore[attr-defined]
            verb = line[:4].upper()
            if verb == b"DATA":
                conn.sendall(b"354 go on\r\n")
                body = b""
                for data in lines:  # type: ignore[attr-defined]
                    if data == b".\r\n":
                        break
                    body += data
                self.taken.append(body)
                conn.sendall(b"250 2.0.0 taken\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"554 5.3.0 not today\r\n")
                return
            elif verb == b"EHLO":
                conn.sendall(b"250-relay.test\r\n250 8BITMIME\r\n")
            else:
                conn.sendall(b"250 ok\r\n")

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def relay() -> Iterator[GrumpyRelay]:
    grumpy = GrumpyRelay()
    yield grumpy
    grumpy.close()


def test_a_message_the_relay_took_is_sent_whatever_it_answers_to_quit(
    tmp_path: Path, db_url: str, relay: GrumpyRelay,
) -> None:
    config = make_config(tmp_path, db_url, outbound={
        "relay_host": "127.0.0.1", "relay_port": relay.port, "retry_schedule_seconds": [1]})
    initialise(config)
    app = App.open(config)
    try:
        with transaction(app.sessions) as session:
            accounts.add(session, email=PROVIDER, name="Dr Pat Family", role="provider",
                         password=PASSWORD, approved=True, license_state="NY")
        deliver(app, case_email(PROVIDER, HELP, "help").as_bytes(), PROVIDER, HELP)
        assert deliver_due(app) == 1
        with app.sessions() as session:
            rows = list(session.execute(select(OutboundMessage)).scalars())
        assert [(r.kind, r.status) for r in rows] == [("help", OutboxStatus.SENT)]
        assert len(relay.taken) == 1  # taken once, and not to be sent again
        assert deliver_due(app) == 0
    finally:
        app.close()
