"""The lockout's rules that the doors' tests do not reach: concurrent attempts, how long an
address stays known, how addresses are counted (tests/e2e/test_smtp_lockout.py and
tests/web/test_lockout.py go through the doors)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import time_machine

from mailflow.app import App
from mailflow.db.models import utcnow
from mailflow.db.session import transaction
from mailflow.trust.lockout import LOGIN, PAIR, Lockout, address_key

LOGIN_NAME = "dr.family@clinic.test"


def test_addresses_are_counted_by_subscriber() -> None:
    assert address_key("203.0.113.7") == "203.0.113.7"
    assert address_key("::ffff:203.0.113.7") == "203.0.113.7"
    # one IPv6 subscriber has a whole /64: stepping through it must not reset any count
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::9%eth0")
    assert address_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("") == "unknown"


def test_parallel_attempts_cannot_all_slip_past_the_count(app: App) -> None:
    """Each attempt is charged before its check: twelve at once from one address get at most
    `attempts` checks between them."""
    lockout = Lockout(app.config.signin, app.sessions)
    with ThreadPoolExecutor(6) as pool:
        charges = list(pool.map(lambda _: lockout.charge(LOGIN_NAME, "198.51.100.4"), range(12)))
    checked = [c for c in charges if c.refused is None]
    assert len(checked) == app.config.signin.attempts
    assert {c.refused for c in charges if c.refused} == {PAIR}
    assert sorted(c.pair_failures for c in checked) == list(range(1, len(checked) + 1))


def test_a_success_takes_back_its_charge_and_an_address_stays_known_for_a_while(
    app: App,
) -> None:
    cfg = app.config.signin.model_copy(update={"login_attempts": 2})
    lockout = Lockout(cfg, app.sessions)
    home, away = "198.51.100.10", "198.51.100.20"
    charge = lockout.charge(LOGIN_NAME, home)
    with transaction(app.sessions) as session:
        lockout.refund(session, charge, signed_in=True)
    for _ in range(2):
        lockout.failed(lockout.charge(LOGIN_NAME, away))  # two failures: the login locks
    assert lockout.charge(LOGIN_NAME, "198.51.100.30").refused == LOGIN
    at_home = lockout.charge(LOGIN_NAME, home)
    assert at_home.refused is None and at_home.known
    assert at_home.pair_failures == 1  # the success before was refunded, not counted
    later = utcnow() + timedelta(days=cfg.known_address_days, minutes=1)
    with time_machine.travel(later, tick=False):
        for _ in range(2):
            lockout.charge(LOGIN_NAME, away)  # the earlier lock ran out; lock it again
        stale = lockout.charge(LOGIN_NAME, home)
    assert not stale.known and stale.refused == LOGIN  # not signed in from there for too long
