"""Issue #12 item 5, TLS that means something. Mail to the relay goes only over TLS whose
certificate chains to a trusted CA (the system's, or `[outbound] relay_ca_file`) and names the
relay: a relay with a certificate that fails, or one that offers no STARTTLS, gets nothing (no
MAIL, no DATA); the mail waits in the outbox with a reason the admin reads on the outbox page,
and leaves at the next try once the configuration is put right. The SMTP door speaks TLS 1.2
or later with forward-secret AEAD suites only."""

from __future__ import annotations

import smtplib
import ssl
import warnings
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from fastapi.testclient import TestClient

from mailflow.app import App, initialise
from mailflow.config import Config
from mailflow.db.models import OutboxStatus, utcnow
from mailflow.outbound.delivery import deliver_due
from mailflow.store.tls import self_signed
from tests.conftest import RunningService, make_config
from tests.support.cases import send_case
from tests.support.db import outbox
from tests.support.mail import client_context
from tests.support.sink import RelaySink
from tests.support.tls_ca import TestCA, server_tls
from tests.support.web import people, web

__all__ = ["people", "web"]  # the web tests' fixtures: accounts and signed-in clients

SITE_CA = "site-ca.pem"  # relative: found in the config file's folder
RELAYS_OWN_CERT = "server-cert.pem"  # where tls_ca.server_tls leaves the relay's certificate
TLS12 = ssl.TLSVersion.TLSv1_2


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    authority = TestCA()
    (tmp_path / SITE_CA).write_bytes(authority.cert_pem)
    return authority


@pytest.fixture
def sink(request: pytest.FixtureRequest, tmp_path: Path, ca: TestCA) -> Iterator[RelaySink]:
    """The relay, by the certificate it shows: `site-ca` (issued by the site's CA for
    127.0.0.1 and localhost), `self-signed`, `localhost-only` (the site's CA, another name),
    `plain` (no STARTTLS), `false-starttls` (offered, then refused)."""
    kind = getattr(request, "param", "site-ca")
    certificates = {"site-ca": lambda: ca.issue("127.0.0.1", "localhost"),
                    "self-signed": lambda: self_signed("localhost"),
                    "localhost-only": lambda: ca.issue("localhost")}
    tls = server_tls(tmp_path, *certificates[kind]()) if kind in certificates else None
    relay = RelaySink(tls, false_starttls=kind == "false-starttls")
    relay.start()
    yield relay
    relay.stop()


def _config(tmp_path: Path, db_url: str, sink: RelaySink, **outbound: object) -> Config:
    return make_config(tmp_path, db_url, outbound={
        "relay_host": "127.0.0.1", "relay_port": sink.port, "relay_starttls": True,
        "retry_schedule_seconds": [60, 60, 60], **outbound})


@pytest.fixture
def config(request: pytest.FixtureRequest, tmp_path: Path, db_url: str,
           sink: RelaySink) -> Config:
    """The relay over STARTTLS, certificate and name verified (the default), with the
    [outbound] values a test asks for."""
    cfg = _config(tmp_path, db_url, sink, **getattr(request, "param", {}))
    initialise(cfg)
    return cfg


def _waiting(app: App) -> list[str]:
    rows = outbox(app)
    assert rows and all(r.status == OutboxStatus.QUEUED and r.attempts == 1 for r in rows)
    return [r.last_error for r in rows]


@pytest.mark.parametrize("config", [{"relay_ca_file": SITE_CA}], indirect=True)
def test_a_relay_whose_certificate_comes_from_the_named_ca_gets_the_mail(
    app: App, people: dict[str, str], sink: RelaySink,
) -> None:
    send_case(app, people["provider"])
    deliver_due(app)
    [ack] = sink.to(people["provider"])
    assert ack.tls and "DERM-" in ack.message["Subject"]
    assert {r.status for r in outbox(app)} == {OutboxStatus.SENT}


@pytest.mark.parametrize(("sink", "config", "reason", "fix"), [
    # the site's own CA, not named: the system's CAs do not know it
    ("site-ca", {}, "the relay's certificate is not trusted", {"relay_ca_file": SITE_CA}),
    ("self-signed", {"relay_ca_file": SITE_CA}, "the relay's certificate is not trusted",
     {"relay_ca_file": RELAYS_OWN_CERT}),  # fixed by trusting (pinning) that certificate
    ("localhost-only", {"relay_ca_file": SITE_CA},
     "the relay's certificate is for another host than 127.0.0.1",
     {"relay_ca_file": SITE_CA, "relay_host": "localhost"}),
    ("site-ca", {"relay_ca_file": "no-such-ca.pem"}, "the CA file", {"relay_ca_file": SITE_CA}),
], indirect=["sink", "config"], ids=["ca-not-named", "self-signed", "another-host", "no-ca-file"])
def test_a_relay_whose_certificate_fails_gets_nothing_until_the_config_is_fixed(
    app: App, people: dict[str, str], sink: RelaySink, web: Callable[[str | None], TestClient],
    tmp_path: Path, db_url: str, reason: str, fix: dict[str, object],
) -> None:
    send_case(app, people["provider"])
    deliver_due(app)
    assert sink.envelopes == [] and sink.messages == []
    errors = _waiting(app)
    assert all(e.startswith(reason) and "nothing was sent" in e for e in errors), errors

    admin = web(people["admin"])
    page = admin.get("/outbox").text
    assert page.count(">queued</span>") == len(errors) and "Everything was delivered" not in page
    assert reason.replace("'", "&#39;") in page and people["provider"] in page

    fixed = App.open(_config(tmp_path, db_url, sink, **fix))
    try:
        deliver_due(fixed)  # not due yet: the next try is a minute away
        assert sink.messages == []
        with time_machine.travel(utcnow() + timedelta(minutes=2)):
            deliver_due(fixed)
    finally:
        fixed.close()
    [ack] = sink.to(people["provider"])
    assert ack.tls and "DERM-" in ack.message["Subject"]
    assert {r.status for r in outbox(app)} == {OutboxStatus.SENT}
    assert "Everything was delivered" in admin.get("/outbox").text


@pytest.mark.parametrize(("sink", "reason"), [
    ("plain", "the relay 127.0.0.1:{port} does not offer STARTTLS"),
    ("false-starttls", "the relay 127.0.0.1:{port} refused STARTTLS (454"),
], indirect=["sink"])
def test_a_relay_without_tls_hears_nothing_in_clear(
    app: App, people: dict[str, str], sink: RelaySink, reason: str,
) -> None:
    send_case(app, people["provider"])
    deliver_due(app)
    assert sink.envelopes == [] and sink.messages == []  # not even a MAIL FROM
    errors = _waiting(app)
    assert all(e.startswith(reason.format(port=sink.port)) for e in errors), errors


# --- the SMTP door ----------------------------------------------------------------------------

def _door(service: RunningService, ctx: ssl.SSLContext) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", service.port, timeout=60)
    client.ehlo("client.test")
    try:
        client.starttls(context=ctx)
    except BaseException:
        client.close()
        raise
    return client


def _client(newest: ssl.TLSVersion, ciphers: str = "DEFAULT") -> ssl.SSLContext:
    """A client speaking TLS no later than `newest`, with these TLS 1.2 suites; its own
    library's floor is lowered so that what refuses is the door."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the door's certificate is self-signed
    ctx.set_ciphers(f"{ciphers}:@SECLEVEL=0")
    with warnings.catch_warnings():  # the deprecated versions are the point
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = newest
    return ctx


@pytest.mark.parametrize("client", [
    pytest.param(lambda: _client(ssl.TLSVersion.TLSv1), id="TLSv1.0"),
    pytest.param(lambda: _client(ssl.TLSVersion.TLSv1_1), id="TLSv1.1"),
    # TLS 1.2 without authenticated encryption (CBC with HMAC), with and without SHA-2. The
    # door's certificate is ECDSA: a static-RSA suite such as AES128-SHA could not be agreed
    # whatever the door allowed, so it would prove nothing here.
    pytest.param(lambda: _client(TLS12, "ECDHE-ECDSA-AES128-SHA"), id="TLSv1.2-CBC-SHA1"),
    pytest.param(lambda: _client(
        TLS12, "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384"),
                 id="TLSv1.2-CBC-SHA2"),
])
def test_the_door_refuses_old_protocols_and_weak_ciphers(
    service: RunningService, client: Callable[[], ssl.SSLContext],
) -> None:
    with pytest.raises(ssl.SSLError):
        _door(service, client())
    with _door(service, _client(TLS12)) as fine:  # the same door, a sound client
        assert fine.ehlo("client.test")[0] == 250


def test_the_door_speaks_modern_tls_to_an_ordinary_client(service: RunningService) -> None:
    with _door(service, client_context()) as client:
        assert client.sock.version() == "TLSv1.3"  # type: ignore[union-attr]
        code, features = client.ehlo("client.test")
        assert code == 250 and b"AUTH" in features  # offered only once TLS is up
    with _door(service, _client(TLS12)) as capped:
        version = capped.sock.version()  # type: ignore[union-attr]
        cipher = capped.sock.cipher()[0]  # type: ignore[union-attr]
    assert version == "TLSv1.2" and cipher.startswith("ECDHE-"), cipher
    assert "GCM" in cipher or "CHACHA20" in cipher, cipher
