"""One sign-in lockout for SMTP AUTH and the web (the password step, the authenticator code
step, and turning the code off), kept in the database so every process and a restart see
the same counts. The numbers are `[signin]` in config.toml.

The rules:

- **A login from one address** (the pair): `attempts` failures, counted from the first for
  `window_minutes`, lock the pair for `lock_minutes`: its attempts are refused without a check.
  The same login from any other address is not affected. A sign-in from the pair starts its
  count again.
- **A login from all addresses together**: `login_attempts` failures, counted the same way, lock
  the login for `lock_minutes` (a guesser spread over many addresses). During that lock the
  login still signs in from its *known* addresses, those it signed in from (by SMTP or the web)
  within `known_address_days`, with the right password and, where the account has one, the
  right authenticator code; from any other address it is refused. A sign-in does not start
  this count again: the provider signing in must not lift a lock a guesser earned.
- **An address, whatever the login**: from `slow_after` failures on, each attempt from it waits
  before its check, `slow_seconds` doubling with each further failure up to
  `slow_max_seconds`. A wait, never a refusal: a clinic behind one NAT is slowed by a guesser
  among them, not locked out. Right and wrong attempts wait alike, so the wait gives nothing
  away. Every failure counts here, refused ones too.

Each attempt is charged as a failure before its check, in its own short transaction, and
refunded if it succeeds: parallel attempts cannot all slip past a count, and no lock is held
while argon2 runs. IPv6 addresses count by their /64 (one subscriber's network); IPv4-mapped
ones as IPv4. Unknown logins are counted like real ones, so a lock tells nobody which exist.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from mailflow.config import SigninConfig
from mailflow.db.access_models import ADDRESS_CHARS, LOGIN_CHARS, SigninAddress, SigninCounter
from mailflow.db.models import utcnow
from mailflow.db.session import ROW_LOCK, transaction

log = logging.getLogger(__name__)

PAIR, LOGIN, ADDRESS = "pair", "login", "address"
SWEEP_BATCH = 200  # stale rows deleted per charge or sign-in: the tables stay small
MAX_DOUBLINGS = 32  # 2**n stays a float long after slow_max_seconds caps it


def login_key(login: str) -> str:
    return login.strip().lower()[:LOGIN_CHARS]


def address_key(peer: str) -> str:
    """The address as counted: IPv4 whole, IPv6 by its /64, anything else as given."""
    text = peer.strip().split("%", 1)[0]  # an IPv6 zone id is not part of the address
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return text[:ADDRESS_CHARS] or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(frozen=True)
class Charge:
    """One attempt, charged as a failure before its check (unless it was refused)."""

    login: str
    address: str
    at: datetime
    refused: str | None  # PAIR or LOGIN: refused without a check (nothing was charged to it)
    known: bool  # the login signed in from this address before
    pair_failures: int
    login_failures: int
    locks: tuple[str, ...] = ()  # the locks this attempt starts if it turns out a failure

    @property
    def locks_out(self) -> bool:
        """If this attempt failed, the next one from here is refused."""
        return PAIR in self.locks or (LOGIN in self.locks and not self.known)


class Lockout:
    def __init__(self, config: SigninConfig, sessions: sessionmaker[Session]) -> None:
        self.config = config
        self.sessions = sessions
        self.window = timedelta(minutes=config.window_minutes)
        self.lock = timedelta(minutes=config.lock_minutes)
        self.known_for = timedelta(days=config.known_address_days)

    # --- the address's slow-down (before the check) -----------------------------------------

    def delay_for(self, peer: str) -> float:
        """Seconds an attempt from this address waits before its check (a read, no writes).
        The caller waits without blocking anyone else (asyncio.sleep)."""
        address, now = address_key(peer), utcnow()
        with self.sessions() as session:
            row = session.execute(select(SigninCounter).filter_by(
                kind=ADDRESS, login="", address=address)).scalar_one_or_none()
        failures = 0 if row is None or now - row.window_start >= self.window else row.failures
        delay = self.slow_down(failures)
        if delay > 0:
            log.info("sign-in from %s slowed by %.2f s: %d failures from there",
                     address, delay, failures)
        return delay

    def slow_down(self, failures: int) -> float:
        cfg = self.config
        if failures < cfg.slow_after:
            return 0.0
        doublings = min(failures - cfg.slow_after, MAX_DOUBLINGS)
        return min(cfg.slow_max_seconds, cfg.slow_seconds * 2.0**doublings)

    # --- charge before the check, refund after a success ------------------------------------

    def charge(self, login: str, peer: str) -> Charge:
        """Decide whether this attempt may be checked, and count it as a failure in advance
        (committed before the caller checks anything). Must not be called inside another
        write transaction: SQLite has one writer."""
        key, address, now = login_key(login), address_key(peer), utcnow()
        cfg = self.config
        with transaction(self.sessions) as session:
            # one order (pair, login, address) everywhere: no two attempts deadlock
            pair = self._counter(session, PAIR, key, address, now)
            per_login = self._counter(session, LOGIN, key, "", now)
            per_address = self._counter(session, ADDRESS, "", address, now)
            known = self._known(session, key, address, now)
            refused = (PAIR if _locked(pair, now)
                       else LOGIN if _locked(per_login, now) and not known else None)
            per_address.failures += 1
            locks: list[str] = []
            if refused is None:
                for kind, row, limit in ((PAIR, pair, cfg.attempts),
                                         (LOGIN, per_login, cfg.login_attempts)):
                    row.failures += 1
                    if row.failures >= limit and row.locked_until is None:
                        row.locked_until = now + self.lock
                        locks.append(kind)
            self._sweep(session, now)
            return Charge(key, address, now, refused, known, pair.failures, per_login.failures,
                          tuple(locks))

    def failed(self, charge: Charge) -> None:
        """The charged attempt failed: the charge stands; say so if it started a lock."""
        if PAIR in charge.locks:
            log.warning("sign-in locked for a login from %s after %d failures there",
                        charge.address, charge.pair_failures)
        if LOGIN in charge.locks:
            log.warning("sign-in locked for a login from all but its known addresses after "
                        "%d failures (the last from %s)", charge.login_failures, charge.address)

    def refund(self, session: Session, charge: Charge, signed_in: bool) -> None:
        """The charged attempt succeeded: take its failure back (in the caller's transaction).
        `signed_in` (its last step passed): the pair's count starts again and the address
        becomes known to the login."""
        if charge.refused is not None:
            return
        cfg = self.config
        for kind, login, address, limit in ((PAIR, charge.login, charge.address, cfg.attempts),
                                            (LOGIN, charge.login, "", cfg.login_attempts),
                                            (ADDRESS, "", charge.address, None)):
            row = session.execute(select(SigninCounter).filter_by(
                kind=kind, login=login, address=address).with_for_update(**ROW_LOCK)
            ).scalar_one_or_none()
            if row is None:
                continue  # swept
            if kind == PAIR and signed_in:
                row.failures, row.locked_until = 0, None
            elif row.window_start <= charge.at:  # else a new window began: nothing of ours
                row.failures = max(0, row.failures - 1)
                if limit is not None and row.failures < limit:
                    row.locked_until = None  # the lock was this attempt's own charge
        if signed_in:
            self._remember(session, charge.login, charge.address)

    # --- rows --------------------------------------------------------------------------------

    def _counter(self, session: Session, kind: str, login: str, address: str,
                 now: datetime) -> SigninCounter:
        """The key's row, created if missing, locked, its window moved on if it ran out."""
        key = {"kind": kind, "login": login, "address": address}
        session.execute(_insert(session, SigninCounter).values(
            **key, failures=0, window_start=now).on_conflict_do_nothing(
            index_elements=list(key)))
        row = session.execute(
            select(SigninCounter).filter_by(**key).with_for_update(**ROW_LOCK)).scalar_one()
        if row.locked_until is not None:
            if row.locked_until <= now:  # a lock ran out: count anew
                row.failures, row.locked_until, row.window_start = 0, None, now
        elif now - row.window_start >= self.window:
            row.failures, row.window_start = 0, now
        return row

    def _known(self, session: Session, login: str, address: str, now: datetime) -> bool:
        return bool(session.execute(select(exists().where(
            SigninAddress.login == login, SigninAddress.address == address,
            SigninAddress.last_success_at > now - self.known_for))).scalar())

    def _remember(self, session: Session, login: str, address: str) -> None:
        now = utcnow()
        session.execute(_insert(session, SigninAddress).values(
            login=login, address=address, last_success_at=now).on_conflict_do_update(
            index_elements=["login", "address"], set_={"last_success_at": now}))
        old = (select(SigninAddress.id)
               .where(SigninAddress.last_success_at < now - self.known_for)
               .limit(SWEEP_BATCH).with_for_update(skip_locked=True, **ROW_LOCK))
        session.execute(delete(SigninAddress).where(SigninAddress.id.in_(old))
                        .execution_options(synchronize_session=False))

    def _sweep(self, session: Session, now: datetime) -> None:
        """Counters whose window and lock are both over count nothing: delete some. Rows
        another attempt holds are skipped, not waited for."""
        stale = (select(SigninCounter.id)
                 .where(SigninCounter.window_start < now - self.window,
                        or_(SigninCounter.locked_until.is_(None),
                            SigninCounter.locked_until < now))
                 .limit(SWEEP_BATCH).with_for_update(skip_locked=True, **ROW_LOCK))
        session.execute(delete(SigninCounter).where(SigninCounter.id.in_(stale))
                        .execution_options(synchronize_session=False))


def _locked(row: SigninCounter, now: datetime) -> bool:
    return row.locked_until is not None and row.locked_until > now


def _insert(session: Session, model: type[Any]) -> Any:
    """INSERT with ON CONFLICT, in the dialect at hand (both speak it the same way)."""
    dialect = session.get_bind().dialect.name
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(model)
