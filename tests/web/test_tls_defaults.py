"""Where the web is reached over https://, its cookies are Secure and it sends
Strict-Transport-Security without being told twice; mail to a relay goes over STARTTLS unless
the configuration says otherwise (issue #11 item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mailflow.app import App, initialise
from mailflow.config import Config, load_config
from mailflow.web.app import create_web_app
from tests.conftest import ROOT, make_config
from tests.support.sink import RelaySink
from tests.support.web import sign_in

HTTPS = "https://consults.example.org"


def _load(tmp_path: Path, text: str, **environ: str) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_config(path, environ=environ)


@pytest.mark.parametrize(("web", "environ", "secure"), [
    ("", {}, False),
    (f'public_url = "{HTTPS}"', {}, True),
    (f'public_url = "{HTTPS.upper()}/"', {}, True),
    ('public_url = "http://consults.example.org"', {}, False),
    (f'public_url = "{HTTPS}"\nsecure_cookies = false\nhsts = false', {}, False),
    ("", {"MAILFLOW_WEB__PUBLIC_URL": HTTPS}, True),
])
def test_secure_cookies_and_hsts_follow_an_https_public_url(
    tmp_path: Path, web: str, environ: dict[str, str], secure: bool,
) -> None:
    config = _load(tmp_path, f"[web]\n{web}\n", **environ)
    assert (config.web.secure_cookies, config.web.hsts) == (secure, secure)


@pytest.mark.parametrize(("outbound", "starttls"), [
    ("", False),  # no relay: mail is written to the maildir
    ('relay_host = "relay.example.org"', True),
    ('relay_host = "relay.example.org"\nrelay_starttls = false', False),
])
def test_mail_to_a_relay_uses_starttls_unless_told_otherwise(
    tmp_path: Path, outbound: str, starttls: bool,
) -> None:
    config = _load(tmp_path, f"[outbound]\n{outbound}\n")
    assert config.outbound.relay_starttls is starttls


def test_the_shipped_config_writes_to_the_maildir_and_would_relay_over_tls() -> None:
    config = load_config(ROOT / "config.toml", environ={})
    assert config.outbound.relay_host == "" and config.outbound.relay_starttls
    relayed = load_config(ROOT / "config.toml",
                          environ={"MAILFLOW_OUTBOUND__RELAY_HOST": "relay.example.org"})
    assert relayed.outbound.relay_starttls
    public = load_config(ROOT / "config.toml", environ={"MAILFLOW_WEB__PUBLIC_URL": HTTPS})
    assert public.web.secure_cookies and public.web.hsts


@pytest.fixture(params=[HTTPS, "http://127.0.0.1:8080"])
def config(request: pytest.FixtureRequest, tmp_path: Path, db_url: str,
           sink: RelaySink) -> Config:
    cfg = make_config(tmp_path, db_url, web={"public_url": request.param})
    initialise(cfg)
    return cfg


def test_the_web_sends_hsts_and_secure_cookies_when_public_url_is_https(
    app: App, people: dict[str, str],
) -> None:
    https = app.config.web_url.startswith("https://")
    base = app.config.web_url
    with TestClient(create_web_app(app), base_url=base) as client:
        page = client.get("/login")
        signed_in = sign_in(client, people["admin"])
        health = client.get("/healthz")
    assert signed_in.status_code == 303
    for response in (page, signed_in, health):
        hsts = response.headers.get("strict-transport-security")
        assert hsts == ("max-age=31536000" if https else None), response.url
    for response in (page, signed_in):
        # the cookies that carry something (a deletion, Max-Age=0, carries nothing)
        cookies = [c for c in response.headers.get_list("set-cookie") if "Max-Age=0" not in c]
        assert cookies and all(("; secure" in c.lower()) is https for c in cookies), cookies
