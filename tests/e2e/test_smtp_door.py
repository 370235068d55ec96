"""The SMTP door's connection limits and what it shows and logs (issue #11 item 6): a cap on
simultaneous connections per client address, an idle timeout, a greeting without the
software's name, and logs without signed reply addresses."""

from __future__ import annotations

import logging
import re
import smtplib
import time
from collections.abc import Iterator

import aiosmtpd
import pytest

from mailflow.app import initialise
from mailflow.config import Config
from mailflow.db.models import InboundMessage
from tests.conftest import PASSWORD, RunningService, make_config
from tests.support.cases import CASE_NUMBER, CASES, three_photos
from tests.support.mail import FULL_FORM, case_email, client_context, reply_to, submit, wait_until
from tests.support.sink import RelaySink

CAP = 2
IDLE = 2.0  # seconds
TLS_SESSIONS = CAP + 1  # more than the cap, one after another: each must give its place back


@pytest.fixture
def config(request: pytest.FixtureRequest, tmp_path, db_url: str, sink: RelaySink) -> Config:  # type: ignore[no-untyped-def]
    """The shared fixture's configuration, with the [smtp] values a test asks for."""
    smtp = {"rate_per_minute": 1000, **getattr(request, "param", {})}
    cfg = make_config(tmp_path, db_url, smtp=smtp, outbound={
        "relay_host": "127.0.0.1", "relay_port": sink.port, "retry_schedule_seconds": [1, 1, 1]})
    initialise(cfg)
    return cfg


def _connect(port: int, source: str) -> tuple[int, bytes, smtplib.SMTP]:
    client = smtplib.SMTP(timeout=60, source_address=(source, 0))
    code, text = client.connect("127.0.0.1", port)
    return code, text, client


def _served(port: int, source: str) -> smtplib.SMTP | None:
    """A connection from `source` that got the 220 greeting, else None (and it is closed)."""
    try:
        return smtplib.SMTP("127.0.0.1", port, timeout=60, source_address=(source, 0))
    except smtplib.SMTPConnectError:
        return None


def _tls_session(port: int) -> bool:
    client = _served(port, "127.0.0.1")
    if client is None:
        return False
    with client:
        client.ehlo("client.test")
        client.starttls(context=client_context())
        return client.ehlo("client.test")[0] == 250


def _closed_by_server(client: smtplib.SMTP) -> bytes:
    """Everything the server sends until it closes the connection (a read that would wait
    past the socket's timeout fails the test)."""
    assert client.sock is not None
    received = b""
    while chunk := client.sock.recv(4096):
        received += chunk
    return received


@pytest.mark.parametrize("config", [{"max_connections_per_ip": CAP}], indirect=True)
def test_connections_over_the_cap_from_one_address_get_421(service: RunningService) -> None:
    port = service.port
    for _ in range(TLS_SESSIONS):  # a place leaked per STARTTLS session would stop these
        wait_until(lambda: _tls_session(port), what="a STARTTLS session to be served")
    held = [wait_until(lambda: _served(port, "127.0.0.1"), what="a connection to be served")
            for _ in range(CAP)]
    code, text, over = _connect(port, "127.0.0.1")
    assert code == 421 and text.startswith(b"4.7.0"), text
    assert b"please try again in a few minutes" in text
    assert _closed_by_server(over) == b""
    over.close()
    other = _served(port, "127.0.0.2")  # another address is served meanwhile
    assert other is not None and other.ehlo("client.test")[0] == 250
    other.quit()
    held.pop().quit()
    again = wait_until(lambda: _served(port, "127.0.0.1"), what="a freed place to be reused")
    for client in [*held, again]:
        client.quit()


@pytest.mark.parametrize("config", [{"idle_timeout_seconds": IDLE}], indirect=True)
def test_an_idle_connection_is_closed_after_the_timeout(service: RunningService) -> None:
    client = _served(service.port, "127.0.0.1")
    assert client is not None
    assert client.ehlo("client.test")[0] == 250
    goodbye = _closed_by_server(client)  # nothing sent: the server hangs up
    assert goodbye.startswith(b"421 4.4.2 "), goodbye
    client.close()


@pytest.mark.parametrize("config", [{"idle_timeout_seconds": IDLE}], indirect=True)
def test_a_message_arriving_slowly_is_not_cut_off_by_the_idle_timeout(
    service: RunningService, config: Config,
) -> None:
    # to register@, which takes mail without AUTH: only the door's handling of DATA matters
    register = config.address(config.mail.register_local)
    raw = case_email("someone@clinic.test", register, "Name: Dr Slow Uplink\n",
                     three_photos()).as_bytes()
    raw = re.sub(rb"(?<!\r)\n", b"\r\n", raw)
    with smtplib.SMTP("127.0.0.1", service.port, timeout=60) as client:
        client.ehlo("client.test")
        assert client.mail("someone@clinic.test")[0] == 250
        assert client.rcpt(register)[0] == 250
        assert client.docmd("DATA")[0] == 354
        chunks = 12
        step = len(raw) // chunks + 1
        for start in range(0, len(raw), step):  # a slow uplink: the whole takes > IDLE
            assert client.sock is not None
            client.sock.sendall(raw[start:start + step])
            time.sleep(IDLE / 8)
        assert client.sock is not None
        client.sock.sendall(b"\r\n.\r\n")
        code, text = client.getreply()
    assert code == 250, text


def test_the_greeting_and_ehlo_name_the_host_and_not_the_software(
    service: RunningService, config: Config,
) -> None:
    with smtplib.SMTP(timeout=60) as client:
        greeting = client.connect("127.0.0.1", service.port)[1].decode()
        ehlo = client.ehlo("client.test")[1].decode()
        help_text = client.docmd("HELP")[1].decode()
    assert greeting.startswith(config.mail.domain)
    for said in (greeting, ehlo, help_text):
        for word in ("aiosmtpd", "python", aiosmtpd.__version__):
            assert word not in said.lower(), said


@pytest.fixture
def door_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG, logger="mail.log")
    caplog.set_level(logging.DEBUG, logger="mailflow")
    yield caplog


def test_logs_name_the_case_and_not_its_signed_reply_address(
    service: RunningService, sink: RelaySink, provider: str,
    door_logs: pytest.LogCaptureFixture,
) -> None:
    submit(service.port, provider, PASSWORD, case_email(provider, CASES, FULL_FORM,
                                                       three_photos()[:2]))
    ack = sink.wait_for(provider)[0]
    number = CASE_NUMBER.search(str(ack.message["Subject"])).group(0)
    door_logs.clear()
    msg, address = reply_to(ack, provider, "The third photo is attached.", three_photos()[2:])
    code, text = submit(service.port, provider, PASSWORD, msg, rcpt=[address])
    assert code == 250, text
    sink.wait_for(provider, count=2)
    local, _, _domain = address.partition("@")
    signature = local.rsplit(".", 1)[1]
    logged = [r.getMessage() for r in door_logs.records if r.levelno >= logging.INFO]
    assert not [line for line in logged if "case+" in line.lower() or signature in line]
    assert any(number in line for line in logged), logged


def test_the_door_defaults_to_a_one_minute_idle_timeout_and_a_cap() -> None:
    smtp = Config().smtp
    assert smtp.idle_timeout_seconds == 60 and smtp.max_connections_per_ip == 10


def test_data_is_stored_as_sent_and_a_line_too_long_is_refused(
    service: RunningService, config: Config,
) -> None:
    # DATA is read in large pieces (intake/smtp_data.py), not line by line: the dots the client
    # doubled come off, and a line over the limit is still refused after the whole message
    register = config.address(config.mail.register_local)
    body = (b"Subject: dots\r\n\r\nName: Dr Dot\r\n.leading dot\r\n..two dots\r\n"
            b".\tdot tab\r\nlast line.\r\n")
    with smtplib.SMTP("127.0.0.1", service.port, timeout=60) as client:
        client.ehlo("client.test")
        assert client.mail("someone@clinic.test")[0] == 250
        assert client.rcpt(register)[0] == 250
        code, text = client.data(b"Subject: long\r\n\r\n" + b"a" * 70_000 + b"\r\n")
        assert (code, text[:6]) == (500, b"5.5.2 "), text
        assert client.mail("someone@clinic.test")[0] == 250  # the connection goes on
        assert client.rcpt(register)[0] == 250
        code, text = client.data(body)  # smtplib doubles each leading dot
    assert code == 250, text
    found = re.search(rb"message (\d+)", text)
    assert found is not None
    with service.app.sessions() as session:
        row = session.get(InboundMessage, int(found.group(1)))
        assert row is not None
        assert service.app.blobs.get(row.blob_sha) == body
