"""Issue #11 item 3: the sign-in lockout on the web (the same one as the SMTP door's:
tests/e2e/test_smtp_lockout.py). Each browser is the real app through Starlette's TestClient
with its own client address, as uvicorn reports the peer."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta

import pytest
import time_machine
from fastapi.testclient import TestClient

from mailflow.app import App
from mailflow.db.models import utcnow
from mailflow.web.app import create_web_app
from tests.support.totp import actions, code_at, enrol, second_step
from tests.support.web import sign_in

Browser = Callable[[str], TestClient]
CLINIC, ATTACKERS, ELSEWHERE = "127.0.0.1", ("127.0.0.2", "127.0.0.3", "127.0.0.4",
                                             "127.0.0.5"), "127.0.0.9"


@contextmanager
def browsers(app: App) -> Iterator[Browser]:
    """browser("127.0.0.2") is a fresh browser at that address, on this app's web."""
    with ExitStack() as stack:
        yield lambda address: stack.enter_context(
            TestClient(create_web_app(app), client=(address, 50000)))


@contextmanager
def another_process(app: App) -> Iterator[App]:
    """The same configuration opened again: its own engine and web app, as another process."""
    other = App.open(app.config)
    try:
        yield other
    finally:
        other.close()


@pytest.fixture
def from_address(app: App) -> Iterator[Browser]:
    with browsers(app) as browser:
        yield browser


def lock_the_login(app: App, from_address: Browser, email: str) -> None:
    """Guessers at several addresses, each until its own pair locks: together enough
    failures to lock the login."""
    cfg = app.config.signin
    assert cfg.attempts * len(ATTACKERS) >= cfg.login_attempts
    for attacker in ATTACKERS:
        browser = from_address(attacker)
        for i in range(cfg.attempts + 1):
            assert sign_in(browser, email, f"guess {i}").status_code == 400
    assert any("login" in (f.get("locked") or []) for f in actions(app, "web.login_failed"))


def test_guessers_cannot_lock_a_provider_out_of_their_known_address(
    app: App, people: dict[str, str], from_address: Browser,
) -> None:
    """(b) Failures against a named provider from other addresses lock those addresses out,
    and then the login from every address it never signed in from; never from the
    provider's own."""
    provider = people["provider"]
    assert sign_in(from_address(CLINIC), provider).status_code == 303  # now a known address
    lock_the_login(app, from_address, provider)
    assert sign_in(from_address(ATTACKERS[0]), provider).status_code == 400  # the pair's lock
    assert sign_in(from_address(ELSEWHERE), provider).status_code == 400  # the login's lock
    assert sign_in(from_address(CLINIC), provider).status_code == 303  # the clinic: signed in
    locked = [e["lock"] for e in actions(app, "web.login_locked")]
    assert locked[-2:] == ["pair", "login"]


def test_at_a_known_address_the_password_and_the_code_still_sign_in(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient],
    from_address: Browser,
) -> None:
    """(b) With the authenticator step on, a locked login signs in from a known address with
    the password and then the code; elsewhere the password step is refused."""
    admin = people["admin"]
    secret = enrol(web(admin))  # signs in from the test client's own address ("testclient")
    lock_the_login(app, from_address, admin)
    assert sign_in(from_address(ELSEWHERE), admin).status_code == 400
    with time_machine.travel(utcnow() + timedelta(seconds=30), tick=False):
        browser = web(None)  # the admin's usual address
        assert sign_in(browser, admin).headers["location"].startswith("/login/code")
        assert second_step(browser, code_at(secret)).headers["location"] == "/"


def test_counts_are_shared_by_two_web_processes_and_survive_a_restart(
    app: App, people: dict[str, str],
) -> None:
    """(c) Two web apps (as two `mailflow web` processes) on the one database: failures at
    either count at both; a web app started afterwards still has them."""
    attempts, provider = app.config.signin.attempts, people["provider"]
    with another_process(app) as other, browsers(app) as first, browsers(other) as second:
        at_one, at_two = first(ATTACKERS[1]), second(ATTACKERS[1])
        for i in range(attempts):
            assert sign_in((at_one, at_two)[i % 2], provider, "guess").status_code == 400
        assert sign_in(at_one, provider).status_code == 400  # locked at both
        assert sign_in(at_two, provider).status_code == 400
    with another_process(app) as restarted, browsers(restarted) as fresh:
        assert sign_in(fresh(ATTACKERS[1]), provider).status_code == 400
        assert sign_in(fresh(CLINIC), provider).status_code == 303  # only that pair


def test_failures_from_an_address_slow_it_down_and_the_wait_is_recorded(
    app: App, people: dict[str, str],
) -> None:
    """(d) From `slow_after` failures on, each sign-in from the address waits (doubling, up
    to the cap) before its check; the audit records the wait. The right password still
    signs in: a slow-down, not a refusal."""
    signin = app.config.signin.model_copy(update={
        "slow_after": 2, "slow_seconds": 0.01, "slow_max_seconds": 0.04})
    slowed_app = dataclasses.replace(app, config=app.config.model_copy(update={"signin": signin}))
    with TestClient(create_web_app(slowed_app), client=(ATTACKERS[2], 50000)) as browser:
        for name in ("a@clinic.test", "b@clinic.test", people["admin"], people["derm"],
                     people["other"]):
            assert sign_in(browser, name, "guess").status_code == 400
        assert sign_in(browser, people["provider"]).status_code == 303
    failed = [e.get("slowed_seconds") for e in actions(app, "web.login_failed")]
    assert failed == [0.01, 0.02, 0.04]  # the three known accounts' (after 2, 3, 4 failures)
    assert actions(app, "web.login")[-1]["slowed_seconds"] == 0.04
