"""A real aiosmtpd server standing in for the outbound relay: it keeps what it is given."""

from __future__ import annotations

import asyncio
import email
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy

from aiosmtpd.controller import Controller

from tests.support.mail import wait_until


@dataclass(frozen=True)
class Delivered:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    tls: bool = False  # given over a STARTTLS session
    at: float = field(default_factory=time.monotonic)  # when it was taken

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, policy=default_policy)  # type: ignore[return-value]

    @property
    def text(self) -> str:
        part = self.message.get_body(("plain",))
        return part.get_content() if part is not None else ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Handler:
    def __init__(self, sink: RelaySink) -> None:
        self.sink = sink

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # type: ignore[no-untyped-def]
        session.host_name = hostname
        if self.sink.false_starttls and "250-STARTTLS" not in responses:
            responses.insert(-1, "250-STARTTLS")  # offered, then refused with 454
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # type: ignore[no-untyped-def]
        with self.sink.lock:
            self.sink.envelopes.append(address)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, options):  # type: ignore[no-untyped-def]
        if self.sink.refuse_with:
            return self.sink.refuse_with
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        with self.sink.lock:
            self.sink.messages.append(
                Delivered(envelope.mail_from, tuple(envelope.rcpt_tos), envelope.original_content,
                          session.ssl is not None))
        while self.sink.hold_data.is_set():  # taken, but the sender hears nothing yet
            await asyncio.sleep(0.05)
        return "250 2.0.0 delivered"

    async def handle_QUIT(self, server, session, envelope):  # type: ignore[no-untyped-def]
        with self.sink.lock:
            self.sink.quits += 1
        while self.sink.hold_quit.is_set():  # a relay slow to say goodbye
            await asyncio.sleep(0.05)
        return "221 2.0.0 bye"


class RelaySink:
    """Plain SMTP, or STARTTLS with `tls` (a server context holding the relay's certificate).
    `false_starttls`: STARTTLS is offered without TLS behind it (answered 454)."""

    def __init__(self, tls: ssl.SSLContext | None = None, false_starttls: bool = False) -> None:
        self.messages: list[Delivered] = []
        self.envelopes: list[str] = []  # every MAIL FROM it heard, delivered or not
        self.false_starttls = false_starttls
        self.lock = threading.Lock()
        self.refuse_with = ""  # e.g. "451 4.3.0 try later" to simulate a relay in trouble
        # set: keep each message but answer its DATA only once cleared (a relay that hangs
        # after taking the message: the sender cannot know whether it was delivered)
        self.hold_data = threading.Event()
        self.hold_quit = threading.Event()  # set: QUIT is answered only once cleared
        self.quits = 0  # QUITs heard
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=free_port(),
                                     tls_context=tls)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.hold_data.clear()
        self.hold_quit.clear()
        self.controller.stop()

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def to(self, address: str) -> list[Delivered]:
        with self.lock:
            return [m for m in self.messages if address in m.rcpt_tos]

    def wait_for(self, address: str, count: int = 1, timeout: float = 30.0) -> list[Delivered]:
        return wait_until(
            lambda: (found := self.to(address)) and len(found) >= count and found,
            timeout,
            f"{count} message(s) to {address} at the relay",
        )
