"""Passwords: hashing (argon2), checking, and a check as slow as a real one for logins that do
not exist. Every door that signs people in (SMTP AUTH, the web) checks here, under the one
lockout (trust/lockout.py); setting a password is an account change, audited in
workflow/accounts.py."""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailflow.db.models import Account, AccountStatus
from mailflow.trust.remembered import RememberedPasswords

log = logging.getLogger(__name__)
_hasher = PasswordHasher()
_dummy_hash: list[str] = []  # made on first use (hashing takes a moment)
# Each hash or check holds its whole memory cost (64 MiB) while it runs: a burst of logins on
# one process would hold that many times over. At most this many run at once in a process
# ([signin] hash_concurrency); the others wait their turn, which costs no CPU the machine had.
_concurrency = 1
_turns = threading.BoundedSemaphore(_concurrency)

_settings = threading.Lock()  # a second App opening while sign-ins run swaps these safely
remembered = RememberedPasswords()  # trust/remembered.py: why, and what is kept
MIN_PASSWORD_LENGTH = 10
# OWASP's least argon2id cost holds memory x passes at about 36 MiB (19 MiB x 2, 12 MiB x 3,
# 46 MiB x 1); below it a stolen hash table is cheap to guess through.
WEAK_COST_KIB_PASSES = 36864


class AccountError(Exception):
    """A request about an account that cannot be done (said to the person who asked)."""


def find_account(session: Session, email: str) -> Account | None:
    """The account signing in with this login (its email address, in any case)."""
    return session.execute(
        select(Account).where(func.lower(Account.email) == email.strip().lower())
    ).scalar_one_or_none()


def set_cost(time_cost: int, memory_kib: int, parallelism: int, concurrency: int = 1) -> None:
    """The cost of new hashes ([signin] hash_*), set when the app opens; a process has one.
    `concurrency`: how many hashes or checks may hold their memory at once."""
    global _hasher, _turns, _concurrency
    with _settings:
        if concurrency != _concurrency:
            _concurrency, _turns = concurrency, threading.BoundedSemaphore(concurrency)
        if (_hasher.time_cost, _hasher.memory_cost, _hasher.parallelism) == (
                time_cost, memory_kib, parallelism):
            return
        _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib,
                                 parallelism=parallelism)
        _dummy_hash.clear()  # the wasted check must cost what a real one costs
    if memory_kib * time_cost < WEAK_COST_KIB_PASSES:
        log.warning("[signin] hash_memory_kib x hash_time_cost is %d KiB, below the least "
                    "safe cost (%d): fine for tests, weak for real passwords",
                    memory_kib * time_cost, WEAK_COST_KIB_PASSES)


def set_remember(minutes: float) -> None:
    """How long a right password is remembered ([signin] remember_minutes; 0: never)."""
    remembered.configure(minutes)


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    with _turns:
        return _hasher.hash(password)


def check_password(account: Account, password: str) -> bool:
    if not account.password_hash:
        return waste_a_check(password)
    # only an account that may sign in is remembered (trust/remembered.py says why)
    remember = account.status == AccountStatus.APPROVED
    key, mac = (account.id, account.password_hash), remembered.mac(password)
    if remember and remembered.was_right(key, mac):
        return True
    try:
        with _turns:
            _hasher.verify(account.password_hash, password)  # raises unless right
    except (VerificationError, InvalidHashError):
        return False
    if remember:
        remembered.remember(key, mac)
    return True


def waste_a_check(password: str) -> bool:
    """A check that always fails and takes as long as a real one: an unknown login (or one
    with no password yet) answers in the same time as a wrong password, so the timing does
    not tell which accounts exist. Always False."""
    hasher = _hasher
    with _turns:
        dummy = _dummy_hash[0] if _dummy_hash else ""
        if not dummy:  # (a cost change meanwhile empties the list: keep our own)
            dummy = hasher.hash(secrets.token_hex(16))
            _dummy_hash[:] = [dummy]
        with contextlib.suppress(VerificationError, InvalidHashError):
            hasher.verify(dummy, password or "-")
    return False
