"""Issue #11 item 3: the sign-in lockout at the SMTP door (real aiosmtpd, smtplib over
STARTTLS). Clients bind to different loopback addresses (Linux routes all of 127/8 to lo), so
the door sees them as different machines."""

from __future__ import annotations

import logging
import smtplib
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from mailflow.app import App, initialise
from mailflow.config import Config
from mailflow.db.access_models import SigninAddress
from mailflow.workflow.pool import AnalysisPool
from tests.conftest import PASSWORD, RunningService, make_config
from tests.support.mail import client_context, wait_until

CLINIC, ATTACKERS, ELSEWHERE = "127.0.0.1", ("127.0.0.2", "127.0.0.3", "127.0.0.4",
                                             "127.0.0.5"), "127.0.0.9"


def auth(port: int, user: str, password: str, source: str = CLINIC) -> int:
    """One AUTH PLAIN on a fresh connection from `source`: 235, or the refusal's code.
    (smtplib's login() would try LOGIN after a failed PLAIN: two attempts, not one.)"""
    with smtplib.SMTP("127.0.0.1", port, timeout=60, source_address=(source, 0)) as smtp:
        smtp.ehlo("client.test")
        smtp.starttls(context=client_context())
        smtp.ehlo("client.test")
        smtp.user, smtp.password = user, password
        try:
            return smtp.auth("PLAIN", smtp.auth_plain)[0]
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code


def test_guessing_random_names_from_an_address_does_not_lock_out_its_real_users(
    service: RunningService, provider: str,
) -> None:
    """(a) A clinic behind one NAT: someone there fails again and again with made-up names;
    a provider at the same address still signs in (slowed, not refused)."""
    nat = ATTACKERS[0]
    for _ in range(7):
        assert auth(service.port, f"{uuid.uuid4().hex[:10]}@clinic.test", "guess", nat) == 535
    assert auth(service.port, provider, PASSWORD, nat) == 235


def test_a_guesser_cannot_lock_a_provider_out_of_their_known_address(
    service: RunningService, provider: str, app: App,
) -> None:
    """(b) Guessing a named provider's password from other addresses locks the guessers out
    (and, past `login_attempts`, every address the provider never signed in from), never
    the provider at an address where they signed in before."""
    cfg = app.config.signin
    assert auth(service.port, provider, PASSWORD, CLINIC) == 235  # the clinic becomes known
    per_address = cfg.attempts
    assert per_address * len(ATTACKERS) >= cfg.login_attempts  # enough to lock the login
    for attacker in ATTACKERS:
        codes = [auth(service.port, provider, f"guess {i}", attacker)
                 for i in range(per_address + 1)]
        assert codes == [535] * (per_address + 1)
    assert auth(service.port, provider, PASSWORD, ATTACKERS[0]) == 535  # that pair is locked
    assert auth(service.port, provider, PASSWORD, ELSEWHERE) == 535  # the login is locked...
    assert auth(service.port, provider, PASSWORD, CLINIC) == 235  # ... but not from the clinic
    with app.sessions() as session:
        known = session.execute(select(SigninAddress.login, SigninAddress.address)).all()
    assert known == [(provider, CLINIC)]


@pytest.fixture
def door_config(tmp_path: Path, db_url: str) -> Config:
    cfg = make_config(tmp_path, db_url, signin={"slow_after": 2, "slow_seconds": 0.01,
                                                "slow_max_seconds": 0.04})
    initialise(cfg)
    return cfg


@pytest.fixture
def doors(door_config: Config, process_pool: AnalysisPool) -> Iterator[list[RunningService]]:
    """SMTP doors, each its own App (engine, authenticator) on the one database: as two
    `mailflow smtpd` processes, or one restarted."""
    started: list[RunningService] = []
    yield started
    for door in started:
        door.stop()
        door.app.close()


def open_door(config: Config, pool: AnalysisPool, started: list[RunningService]) -> int:
    door = RunningService(App.open(config), pool, ("smtp",)).start()
    started.append(door)
    return door.port


def add_provider(app_config: Config) -> str:
    from mailflow.db.session import transaction
    from mailflow.workflow import accounts

    app = App.open(app_config)
    try:
        with transaction(app.sessions) as session:
            accounts.add(session, email="dr.nat@clinic.test", name="Dr Nat", role="provider",
                         password=PASSWORD, approved=True, license_state="NY")
    finally:
        app.close()
    return "dr.nat@clinic.test"


def test_counts_are_shared_by_two_doors_and_survive_a_restart(
    door_config: Config, process_pool: AnalysisPool, doors: list[RunningService],
) -> None:
    """(c) Failures at one door count at the other; a restarted door still knows them."""
    provider = add_provider(door_config)
    one = open_door(door_config, process_pool, doors)
    two = open_door(door_config, process_pool, doors)
    guesser = ATTACKERS[1]
    assert [auth(one, provider, "guess", guesser) for _ in range(3)] == [535] * 3
    assert [auth(two, provider, "guess", guesser) for _ in range(2)] == [535] * 2
    assert auth(one, provider, PASSWORD, guesser) == 535  # 3 + 2: the pair is locked at both
    first = doors.pop(0)  # a restart: the first door's process ends, a new one starts
    first.stop()
    first.app.close()
    restarted = open_door(door_config, process_pool, doors)
    assert auth(restarted, provider, PASSWORD, guesser) == 535
    assert auth(restarted, provider, PASSWORD, CLINIC) == 235  # only that pair


def test_an_address_with_failures_is_slowed_not_refused(
    door_config: Config, process_pool: AnalysisPool, doors: list[RunningService],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """(d) From `slow_after` failures on, each attempt from the address waits before its
    check, doubling up to the cap; the right password still signs in. The door reports each
    wait (the test reads the report, not a stopwatch)."""
    caplog.set_level(logging.INFO, logger="mailflow.trust.lockout")
    provider = add_provider(door_config)
    port = open_door(door_config, process_pool, doors)
    source = ATTACKERS[2]
    names = [f"{uuid.uuid4().hex[:8]}@clinic.test" for _ in range(5)]
    assert [auth(port, name, "guess", source) for name in names] == [535] * 5
    assert auth(port, provider, PASSWORD, source) == 235
    assert auth(port, provider, PASSWORD, CLINIC) == 235  # another address: no wait
    waits = [r.args for r in caplog.records
             if r.name == "mailflow.trust.lockout" and "slowed by" in r.getMessage()]
    # before attempts 3, 4, 5 and 6 (2, 3, 4, 5 failures so far): 0.01 doubling, capped 0.04
    assert waits == [(source, 0.01, 2), (source, 0.02, 3), (source, 0.04, 4),
                     (source, 0.04, 5)]


def test_a_slowed_attempt_does_not_hold_up_the_door(
    tmp_path: Path, db_url: str, process_pool: AnalysisPool, doors: list[RunningService],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The wait is an asyncio sleep: while one address waits a minute, another signs in."""
    caplog.set_level(logging.INFO, logger="mailflow.trust.lockout")
    config = make_config(tmp_path, db_url, signin={"slow_after": 1, "slow_seconds": 60,
                                                   "slow_max_seconds": 60})
    initialise(config)
    provider = add_provider(config)
    port = open_door(config, process_pool, doors)
    slow = ATTACKERS[3]
    assert auth(port, "nobody@clinic.test", "guess", slow) == 535  # no wait before the first
    waiting = smtplib.SMTP("127.0.0.1", port, timeout=120, source_address=(slow, 0))
    waiting.ehlo("client.test")
    waiting.starttls(context=client_context())
    waiting.ehlo("client.test")
    outcome: list[object] = []

    def slowed_login() -> None:
        waiting.user, waiting.password = provider, PASSWORD
        try:
            outcome.append(waiting.auth("PLAIN", waiting.auth_plain)[0])
        except (OSError, smtplib.SMTPException) as exc:
            outcome.append(exc)

    thread = threading.Thread(target=slowed_login, daemon=True)
    thread.start()
    wait_until(lambda: any("slowed by" in r.getMessage() for r in caplog.records),
               what="the door to start the wait")
    assert auth(port, provider, PASSWORD, CLINIC) == 235  # served during the other's wait
    assert thread.is_alive() and outcome == []  # still waiting its minute
    waiting.sock.shutdown(socket.SHUT_RDWR)  # hang up: the door drops the waiting attempt
    thread.join(30)
    waiting.close()
