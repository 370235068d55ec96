"""Issue #5 item 2: the optional authenticator (TOTP) step for admins' web sign-in."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from datetime import timedelta

import time_machine
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailflow.app import App
from mailflow.config import Config
from mailflow.db.models import Account, utcnow
from mailflow.db.session import transaction
from mailflow.web.app import create_web_app
from mailflow.workflow import accounts
from tests.support.cli import run_cli
from tests.support.totp import ENROL, actions, code_at, enrol, second_step
from tests.support.web import csrf_of, sign_in


def secret_of(app: App, email: str) -> str | None:
    with app.sessions() as session:
        return session.execute(select(Account.totp_secret).where(Account.email == email)
                               ).scalar_one()


def test_an_admin_turns_it_on_and_then_signs_in_with_a_code(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient],
) -> None:
    admin = web(people["admin"])
    page = admin.get("/account")
    wrong = admin.post("/account/totp", data={
        "csrf_token": csrf_of(page.text), "enrol": ENROL.search(page.text).group(1),  # type: ignore[union-attr]
        "code": "000000"}, follow_redirects=False)
    assert wrong.status_code == 303 and secret_of(app, people["admin"]) is None
    assert "did not match" in admin.get("/account").text
    secret = enrol(admin)
    assert secret_of(app, people["admin"]) == secret  # stored (encrypted at rest)
    assert actions(app, "account.totp_on") == [{"via": "web"}]

    browser = web(None)
    first = sign_in(browser, people["admin"])
    assert first.status_code == 303 and first.headers["location"].startswith("/login/code")
    assert browser.get("/", follow_redirects=False).headers["location"].startswith("/login")
    refused = second_step(browser, "123456" if code_at(secret, 1) != "123456" else "654321")
    assert refused.status_code == 400 and "did not match" in refused.text
    with time_machine.travel(utcnow() + timedelta(seconds=30), tick=False):
        code = code_at(secret)
        done = second_step(browser, code)
        assert done.status_code == 303 and done.headers["location"] == "/"
        assert "SLA overview" in browser.get("/").text
        # the same code again, from another browser that knows the password: refused
        thief = web(None)
        assert sign_in(thief, people["admin"]).status_code == 303
        assert second_step(thief, code).status_code == 400
    failed = actions(app, "web.login_failed")
    assert [f["factor"] for f in failed] == ["code", "code"]


def test_wrong_codes_lock_the_sign_in_like_wrong_passwords(
    app: App, config: Config, people: dict[str, str],
    web: Callable[[str | None], TestClient],
) -> None:
    enrol(web(people["admin"]))
    browser = web(None)
    sign_in(browser, people["admin"])
    for _ in range(config.signin.attempts - 1):
        assert second_step(browser, "000001").status_code == 400
    last = second_step(browser, "000001")
    assert last.status_code == 400 and "did not sign you in" in last.text  # back to the start
    with time_machine.travel(utcnow() + timedelta(seconds=30), tick=False):
        again = web(None)
        assert sign_in(again, people["admin"]).status_code == 400  # locked: even the password
    assert actions(app, "web.login_failed")[-1]["locked_minutes"] == config.signin.lock_minutes


def test_the_code_step_runs_out(app: App, config: Config, people: dict[str, str],
                                web: Callable[[str | None], TestClient]) -> None:
    secret = enrol(web(people["admin"]))
    browser = web(None)
    sign_in(browser, people["admin"])
    form = browser.get("/login/code")  # ... and then the phone is not at hand for a while
    later = utcnow() + timedelta(minutes=config.web.code_minutes, seconds=31)
    with time_machine.travel(later, tick=False):
        late = browser.post("/login/code", data={"code": code_at(secret),
                                                 "csrf_token": csrf_of(form.text)})
    assert late.status_code == 400 and "ran out" in late.text


def test_turning_it_off_needs_a_current_code(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient],
) -> None:
    admin = web(people["admin"])
    secret = enrol(admin)
    with time_machine.travel(utcnow() + timedelta(seconds=30), tick=False):
        page = admin.get("/account")
        assert "Turn it off" in page.text
        admin.post("/account/totp/off", data={"csrf_token": csrf_of(page.text),
                                              "code": "000002"})
        assert secret_of(app, people["admin"]) == secret
        admin.post("/account/totp/off", data={"csrf_token": csrf_of(page.text),
                                              "code": code_at(secret)})
    assert secret_of(app, people["admin"]) is None
    assert sign_in(web(None), people["admin"]).headers["location"] == "/"


def test_a_site_can_require_it_of_admins(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient],
) -> None:
    strict = dataclasses.replace(app, config=app.config.model_copy(update={
        "web": app.config.web.model_copy(update={"require_totp_for_admins": True})}))
    admin = TestClient(create_web_app(strict))
    derm = TestClient(create_web_app(strict))
    with admin, derm:
        assert sign_in(admin, people["admin"]).status_code == 303
        assert admin.get("/", follow_redirects=False).headers["location"] == "/account"
        assert admin.get("/quarantine", follow_redirects=False).headers["location"] == "/account"
        assert admin.get("/api/cases").status_code == 403
        assert "Administrators on this site must set" in admin.get("/account").text
        enrol(admin)
        assert admin.get("/").status_code == 200 and admin.get("/api/cases").status_code == 200
        assert "Turn it off" not in admin.get("/account").text  # required: cannot be removed
        assert sign_in(derm, people["derm"]).status_code == 303  # other roles: unchanged
        assert derm.get("/").status_code == 200


def test_the_command_line_turns_it_on_and_off(
    app: App, config: Config, people: dict[str, str],
    web: Callable[[str | None], TestClient],
) -> None:
    out = run_cli(config, "users", "totp", people["admin"])
    assert out.returncode == 0, out.stderr
    key = re.search(r"key: ([A-Z2-7 ]+)", out.stdout).group(1).replace(" ", "")  # type: ignore[union-attr]
    assert "otpauth://totp/" in out.stdout and secret_of(app, people["admin"]) == key
    browser = web(None)
    assert sign_in(browser, people["admin"]).headers["location"].startswith("/login/code")
    assert second_step(browser, code_at(key)).headers["location"] == "/"
    assert run_cli(config, "users", "totp", people["admin"], "--remove").returncode == 0
    assert sign_in(web(None), people["admin"]).headers["location"] == "/"
    missing = run_cli(config, "users", "totp", "nobody@nowhere.test", check=False)
    assert missing.returncode != 0 and "no account" in missing.stderr


def test_turning_it_off_is_guarded_like_signing_in(
    app: App, config: Config, people: dict[str, str],
    web: Callable[[str | None], TestClient],
) -> None:
    admin = web(people["admin"])
    secret = enrol(admin)
    page = admin.get("/account")
    for _ in range(config.signin.attempts):  # a stolen session guessing codes
        admin.post("/account/totp/off", data={"csrf_token": csrf_of(page.text),
                                              "code": "000003"})
    with time_machine.travel(utcnow() + timedelta(seconds=30), tick=False):
        admin.post("/account/totp/off", data={"csrf_token": csrf_of(page.text),
                                              "code": code_at(secret)})  # locked now
    assert secret_of(app, people["admin"]) == secret
    assert actions(app, "web.login_failed")[-1]["locked_minutes"] == config.signin.lock_minutes


def test_a_password_change_voids_a_half_done_sign_in(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient],
) -> None:
    secret = enrol(web(people["admin"]))
    browser = web(None)
    sign_in(browser, people["admin"])  # the password step done; the code not yet
    with transaction(app.sessions) as session:
        account = accounts.find(session, people["admin"])
        assert account is not None
        account.password_hash = accounts.hash_password("a completely new password")
    with time_machine.travel(utcnow() + timedelta(seconds=30), tick=False):
        late = second_step(browser, code_at(secret))
    assert late.status_code == 400 and "Sign in again" in late.text
