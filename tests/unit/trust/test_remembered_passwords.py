"""Right passwords remembered for [signin] remember_minutes: what is and is not remembered,
counted by the argon2 checks a sign-in costs (a real hasher at the least cost, counting)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher

from mailflow.db.models import Account, AccountStatus
from mailflow.trust import passwords
from mailflow.trust.remembered import RememberedPasswords

RIGHT = "correct horse battery"


class CountingHasher(PasswordHasher):
    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.checks = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # noqa: A002
        self.checks += 1
        return super().verify(hash, password)


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingHasher]:
    counting = CountingHasher()
    monkeypatch.setattr(passwords, "_hasher", counting)
    monkeypatch.setattr(passwords, "remembered", RememberedPasswords())
    passwords.set_remember(10)
    yield counting


def account(status: str = AccountStatus.APPROVED, account_id: int = 7) -> Account:
    return Account(id=account_id, email="dr@clinic.test", status=status,
                   password_hash=CountingHasher().hash(RIGHT))


def test_a_right_password_is_checked_once_and_a_wrong_one_every_time(
        hasher: CountingHasher) -> None:
    dr = account()
    assert passwords.check_password(dr, RIGHT) and passwords.check_password(dr, RIGHT)
    assert hasher.checks == 1
    assert not passwords.check_password(dr, RIGHT + " ")
    assert not passwords.check_password(dr, RIGHT + " ")
    assert hasher.checks == 3


@pytest.mark.parametrize("status", [AccountStatus.PENDING, AccountStatus.REJECTED,
                                    AccountStatus.DISABLED])
def test_an_account_that_may_not_sign_in_is_never_remembered(
        hasher: CountingHasher, status: str) -> None:
    """Else a right guess answered fast the second time: the password of an account that
    cannot sign in would show through the timing."""
    dr = account(status)
    assert passwords.check_password(dr, RIGHT) and passwords.check_password(dr, RIGHT)
    assert hasher.checks == 2


def test_a_new_password_or_another_account_is_checked_in_full(hasher: CountingHasher) -> None:
    dr = account()
    assert passwords.check_password(dr, RIGHT)
    dr.password_hash = CountingHasher().hash(RIGHT)  # set again: a new salt, a new hash
    assert passwords.check_password(dr, RIGHT)
    assert passwords.check_password(account(account_id=8), RIGHT)
    assert hasher.checks == 3


def test_nothing_is_remembered_when_turned_off(hasher: CountingHasher) -> None:
    passwords.set_remember(0)
    dr = account()
    assert passwords.check_password(dr, RIGHT) and passwords.check_password(dr, RIGHT)
    assert hasher.checks == 2


def test_a_remembered_password_is_forgotten_when_its_time_is_up() -> None:
    now = [1000.0]
    memory = RememberedPasswords(clock=lambda: now[0])
    memory.configure(10)
    mac = memory.mac(RIGHT)
    memory.remember((7, "hash"), mac)
    now[0] += 599
    assert memory.was_right((7, "hash"), mac) and len(memory) == 1
    now[0] += 2
    assert not memory.was_right((7, "hash"), mac)
    assert len(memory) == 0  # gone from memory, not only ignored
