"""Issue #12 item 4: a provider uploads their S/MIME certificate on their account page; an
admin approves it (or refuses it) on the registrations page. Each change is audited."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailflow.app import App, initialise
from mailflow.config import Config
from mailflow.db.models import AuditEvent
from tests.conftest import make_config
from tests.support.smime import Pki
from tests.support.tls_ca import TestCA
from tests.support.web import csrf_of


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


@pytest.fixture
def config(tmp_path: Path, db_url: str, pki: Pki) -> Config:
    cfg = make_config(tmp_path, db_url, smime=pki.smime_config("aes-256-cbc"))
    initialise(cfg)
    return cfg


def upload(client: TestClient, pem: bytes) -> str:
    page = client.get("/account")
    done = client.post("/account/certificate", data={"csrf_token": csrf_of(page.text)},
                       files={"certificate": ("me.pem", pem, "application/x-pem-file")})
    assert done.status_code == 200, done.text  # after the redirect: the account page
    return done.text


def test_a_provider_uploads_and_an_admin_approves(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient], pki: Pki,
) -> None:
    provider = web(people["provider"])
    page = provider.get("/account")
    assert "Secure email (S/MIME, Direct)" in page.text
    stranger, _ = pki.issue("stranger", people["provider"], ca=TestCA("another CA"))
    refused = upload(provider, stranger.read_bytes())
    assert "That certificate cannot be used" in refused and "trusted authority" in refused
    someone_else, _ = pki.issue("someone", people["other"])
    assert "not " + people["provider"] in upload(provider, someone_else.read_bytes())

    cert, _key = pki.issue("provider", people["provider"])
    shown = upload(provider, cert.read_bytes())
    assert "waiting for our team to approve it" in shown
    assert re.search(r'class="cert-status">waiting for approval<', shown)

    assert provider.post("/certificates/1/approve", data={
        "csrf_token": csrf_of(shown)}, follow_redirects=False).status_code == 403
    admin = web(people["admin"])
    listing = admin.get("/registrations").text
    assert "Secure email certificates waiting for approval" in listing
    [cert_id] = re.findall(r'action="/certificates/(\d+)/approve"', listing)
    approved = admin.post(f"/certificates/{cert_id}/approve",
                          data={"csrf_token": csrf_of(listing)})
    assert f"The certificate of {people['provider']} is approved" in approved.text
    assert re.search(r'class="cert-status">in use<', provider.get("/account").text)
    with app.sessions() as session:
        events = [(e.action, e.actor) for e in session.execute(
            select(AuditEvent).where(AuditEvent.action.like("smime.%"))).scalars()]
    assert events == [("smime.cert.offered", people["provider"]),
                      ("smime.cert.approved", people["admin"])]
