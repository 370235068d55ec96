"""Web sign-in: the cookie signing key, sessions, CSRF tokens; failures go to the lockout.

The session cookie is signed (itsdangerous) and carries the account id and a random nonce; the
database keeps a hash of the nonce (web_sessions), so signing out or an expiry ends the session
on the server, not only in the browser. The CSRF token is an HMAC of the nonce: one per
session, nothing more to store. Before sign-in, a signed "pre-session" cookie plays the same
role for the sign-in form itself.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mailflow import audit
from mailflow.config import Config
from mailflow.db.access_models import WebLogin, WebSession
from mailflow.db.models import Account, AccountStatus, Role, utcnow
from mailflow.db.session import ROW_LOCK, transaction
from mailflow.trust import passwords, totp
from mailflow.trust.lockout import Charge, Lockout
from mailflow.workflow import accounts

log = logging.getLogger(__name__)

SESSION_COOKIE = "mailflow_session"
PRE_COOKIE = "mailflow_pre"  # before sign-in: binds the sign-in form's CSRF token
FLASH_COOKIE = "mailflow_flash"
CODE_COOKIE = "mailflow_code"  # between the password and the authenticator code
WEB_ROLES = (Role.ADMIN, Role.DERMATOLOGIST, Role.PROVIDER)
KEY_BYTES = 32



def secret_key_path(config: Config) -> Path:
    configured = config.web.secret_key_file
    return config.path(configured) if configured else config.storage_dir / "keys" / "web.key"


def load_secret(config: Config) -> bytes:
    """The cookie signing key, created on first use (0600; O_EXCL so two processes agree)."""
    path = secret_key_path(config)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it a moment ago: use theirs
        else:
            try:
                os.write(fd, secrets.token_bytes(KEY_BYTES).hex().encode())
                os.fsync(fd)
            finally:
                os.close(fd)
    key = bytes.fromhex(path.read_text().strip())
    if len(key) < 16:
        raise ValueError(f"the web key at {path} is too short")
    return key


@dataclass(frozen=True)
class WebUser:
    id: int
    email: str
    name: str
    role: str
    nonce: str
    csrf: str
    has_totp: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


@dataclass(frozen=True)
class SignIn:
    """What a sign-in step gave: a session, the code step next, or neither."""

    session_cookie: str | None = None
    code_cookie: str | None = None  # the password was right; the TOTP code comes next
    expired: bool = False  # the code step's cookie is missing, stale or forged


def _nonce_hash(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()


class WebAuth:
    def __init__(self, config: Config, sessions: sessionmaker[Session], key: bytes) -> None:
        self.config = config
        self.sessions = sessions
        self._key = key
        self._signer = URLSafeTimedSerializer(key, salt="mailflow web session")
        self._pre_signer = URLSafeTimedSerializer(key, salt="mailflow web pre-session")
        self._flash_signer = URLSafeTimedSerializer(key, salt="mailflow web flash")
        self._code_signer = URLSafeTimedSerializer(key, salt="mailflow web second step")
        self._enrol_signer = URLSafeTimedSerializer(key, salt="mailflow web totp enrolment")
        self.lockout = Lockout(config.signin, sessions)

    @property
    def max_age(self) -> int:
        return self.config.web.session_minutes * 60

    # --- CSRF ------------------------------------------------------------------------------

    def csrf_for(self, nonce: str) -> str:
        return hmac.new(self._key, b"csrf\x00" + nonce.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, nonce: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_for(nonce), token or "")

    def new_pre_session(self) -> tuple[str, str]:
        """(cookie value, form token) for the sign-in form."""
        nonce = secrets.token_urlsafe(24)
        return self._pre_signer.dumps(nonce), self.csrf_for("pre:" + nonce)

    def pre_session_nonce(self, cookie: str | None) -> str | None:
        if not cookie:
            return None
        try:
            nonce = self._pre_signer.loads(cookie, max_age=3600)
        except BadSignature:
            return None
        return nonce if isinstance(nonce, str) else None

    def pre_token(self, nonce: str) -> str:
        return self.csrf_for("pre:" + nonce)

    # --- flash messages (one-shot, signed, no PHI) ------------------------------------------

    def flash_value(self, kind: str, text: str) -> str:
        return self._flash_signer.dumps([kind, text])

    def read_flash(self, cookie: str | None) -> tuple[str, str] | None:
        if not cookie:
            return None
        try:
            kind, text = self._flash_signer.loads(cookie, max_age=300)
        except (BadSignature, ValueError, TypeError):
            return None
        return str(kind), str(text)

    # --- sign-in, sessions ------------------------------------------------------------------

    def delay_for(self, peer: str) -> float:
        """The sign-in slow-down for this address (the shared lockout's); the page waits it
        out without holding a thread."""
        return self.lockout.delay_for(peer)

    def sign_in(self, email: str, password: str, peer: str = "", slowed: float = 0.0) -> SignIn:
        """Check the password. With no second step: a session. With TOTP on: a short-lived
        cookie for the code page (sign_in_code). Else nothing (wrong email or password, or
        locked out; the answer does not say which). Failures count in the shared lockout
        (mailflow/trust/lockout.py); `slowed`: the seconds this attempt waited first."""
        charge = self.lockout.charge(email, peer)
        # argon2 runs with no transaction open: on SQLite one would hold the only write lock
        # (the SMTP door's sign-ins and spooling) for the length of the hash
        with self.sessions() as reader:
            found = passwords.find_account(reader, email) if email.strip() else None
            if charge.refused is not None or found is None:
                passwords.waste_a_check(password)
                right = False
            else:
                right = passwords.check_password(found, password)
            checked = (found.id, found.password_hash) if found is not None else None
        with transaction(self.sessions) as session:
            account = session.get(Account, checked[0]) if checked is not None else None
            if charge.refused is not None or account is None:
                if account is not None:
                    self._refused(session, account, charge, peer)
                else:
                    log.info("web sign-in failed: unknown account")
                return SignIn()
            allowed = account.status == AccountStatus.APPROVED and account.role in WEB_ROLES
            # the password checked is still the account's (not changed meanwhile)
            if not (right and allowed and checked == (account.id, account.password_hash)):
                self._failed(session, account, charge, peer, "password", slowed)
                return SignIn()
            if account.totp_secret:
                # not a failure; but the pair's count stands until the code is right too
                self.lockout.refund(session, charge, signed_in=False)
                return SignIn(code_cookie=self._code_signer.dumps(
                    {"a": account.id, "p": _nonce_hash(account.password_hash or "")}))
            return SignIn(session_cookie=self._open_session(session, account, charge, peer,
                                                            slowed))

    def sign_in_code(self, code_cookie: str | None, code: str, peer: str = "",
                     slowed: float = 0.0) -> SignIn:
        """The second step: the code from the authenticator, within `code_minutes`."""
        try:
            data = self._code_signer.loads(
                code_cookie or "", max_age=int(self.config.web.code_minutes * 60))
            account_id, password_mark = int(data["a"]), str(data["p"])
        except (BadSignature, KeyError, TypeError, ValueError):
            return SignIn(expired=True)
        with self.sessions() as session:  # the login to charge (a read: SQLite has one writer)
            email = session.execute(
                select(Account.email).where(Account.id == account_id)).scalar_one_or_none()
        if email is None:
            return SignIn(expired=True)
        charge = self.lockout.charge(email, peer)
        with transaction(self.sessions) as session:
            account = session.get(Account, account_id)
            # bound to the password it followed: a password change voids it
            if (account is None or not account.totp_secret
                    or password_mark != _nonce_hash(account.password_hash or "")):
                self.lockout.refund(session, charge, signed_in=False)
                return SignIn(expired=True)
            if charge.refused is not None:
                self._refused(session, account, charge, peer)
                return SignIn()
            state = _login_state(session, account.id)
            step = totp.accepted_step(account.totp_secret, code[:20], utcnow(),
                                      state.totp_last_step)
            if step is None or account.status != AccountStatus.APPROVED:
                self._failed(session, account, charge, peer, "code", slowed)
                return SignIn(code_cookie=None if charge.locks_out else code_cookie)
            state.totp_last_step = step
            return SignIn(session_cookie=self._open_session(session, account, charge, peer,
                                                            slowed))

    def _refused(self, session: Session, account: Account, charge: Charge, peer: str) -> None:
        audit.record(session, "web.login_locked", actor=account.email, entity="account",
                     entity_id=account.id, detail={"peer": peer, "lock": charge.refused})

    def _failed(self, session: Session, account: Account, charge: Charge, peer: str,
                factor: str, slowed: float = 0.0) -> None:
        self.lockout.failed(charge)
        detail: dict[str, object] = {"failures": charge.pair_failures,
                                     "login_failures": charge.login_failures,
                                     "peer": peer, "factor": factor}
        if slowed:
            detail["slowed_seconds"] = slowed
        if charge.locks:
            detail["locked"] = list(charge.locks)
            detail["locked_minutes"] = self.config.signin.lock_minutes
            log.warning("web sign-in locked (%s) for account %d",
                        ", ".join(charge.locks), account.id)
        audit.record(session, "web.login_failed", actor=account.email, entity="account",
                     entity_id=account.id, detail=detail)

    def _open_session(self, session: Session, account: Account, charge: Charge, peer: str,
                      slowed: float = 0.0) -> str:
        now = utcnow()
        self.lockout.refund(session, charge, signed_in=True)
        _login_state(session, account.id).last_login_at = now
        nonce = secrets.token_urlsafe(32)
        session.add(WebSession(nonce_hash=_nonce_hash(nonce), account_id=account.id,
                               created_at=now, expires_at=now + timedelta(seconds=self.max_age)))
        # expired rows of this account go now: the table stays small without a sweeper
        session.execute(delete(WebSession).where(WebSession.account_id == account.id,
                                                 WebSession.expires_at < now))
        detail: dict[str, object] = {"peer": peer,
                                     "second_step": bool(account.totp_secret)}
        if slowed:
            detail["slowed_seconds"] = slowed
        audit.record(session, "web.login", actor=account.email, entity="account",
                     entity_id=account.id, detail=detail)
        return str(self._signer.dumps({"a": account.id, "n": nonce}))

    # --- TOTP enrolment ---------------------------------------------------------------------

    def enrolment_token(self, user: WebUser, secret: str) -> str:
        """The secret being set up, signed and bound to this session, for the confirm form."""
        return str(self._enrol_signer.dumps({"s": secret, "n": _nonce_hash(user.nonce)}))

    def enrolment_secret(self, user: WebUser, token: str) -> str | None:
        try:
            data = self._enrol_signer.loads(token, max_age=1800)
        except BadSignature:
            return None
        if not isinstance(data, dict) or data.get("n") != _nonce_hash(user.nonce):
            return None
        secret = data.get("s")
        return secret if isinstance(secret, str) else None

    def set_totp(self, user: WebUser, secret: str | None, code: str, peer: str = "") -> bool:
        """Turn the second step on (with the new secret) or off (secret None), proven by a
        current code from the authenticator: the new one's, or the enrolled one's. Turning off
        takes the enrolled code, under the same lockout as signing in."""
        charge = self.lockout.charge(user.email, peer) if secret is None else None
        with transaction(self.sessions) as session:
            account = session.get(Account, user.id, with_for_update=ROW_LOCK)
            if account is None or (secret is not None and account.totp_secret):
                return False  # replacing a secret means turning the old one off first
            if charge is not None and charge.refused is not None:
                self._refused(session, account, charge, peer)
                return False
            state = _login_state(session, account.id)
            check = secret if secret is not None else (account.totp_secret or "")
            step = totp.accepted_step(check, code[:20], utcnow(), state.totp_last_step)
            if step is None:
                if charge is not None:
                    self._failed(session, account, charge, peer, "code")
                return False
            if charge is not None:
                self.lockout.refund(session, charge, signed_in=False)
            state.totp_last_step = step
            accounts.set_totp(session, account.email, secret, actor=user.email, via="web")
            return True

    def user_for(self, cookie: str | None) -> WebUser | None:
        if not cookie:
            return None
        try:
            data = self._signer.loads(cookie, max_age=self.max_age)
            account_id, nonce = int(data["a"]), str(data["n"])
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
        with self.sessions() as session:
            row = session.execute(
                select(Account)
                .join(WebSession, WebSession.account_id == Account.id)
                .where(WebSession.nonce_hash == _nonce_hash(nonce),
                       WebSession.account_id == account_id,
                       WebSession.expires_at > utcnow())
            ).scalar_one_or_none()
            # a disabled account or one whose role changed loses its sessions at once
            if row is None or row.status != AccountStatus.APPROVED or row.role not in WEB_ROLES:
                return None
            return WebUser(row.id, row.email, row.name, row.role, nonce, self.csrf_for(nonce),
                           has_totp=bool(row.totp_secret))

    def sign_out(self, user: WebUser) -> None:
        with transaction(self.sessions) as session:
            session.execute(delete(WebSession).where(
                WebSession.nonce_hash == _nonce_hash(user.nonce)))
            audit.record(session, "web.logout", actor=user.email, entity="account",
                         entity_id=user.id)


def _login_state(session: Session, account_id: int) -> WebLogin:
    """The account's row, locked; created on its first sign-in (two first sign-ins at once:
    one insert wins, the other reads the winner's row)."""
    state = session.get(WebLogin, account_id, with_for_update=ROW_LOCK)
    if state is not None:
        return state
    try:
        with session.begin_nested():
            session.add(WebLogin(account_id=account_id))
    except IntegrityError:
        pass
    state = session.get(WebLogin, account_id, with_for_update=ROW_LOCK, populate_existing=True)
    assert state is not None
    return state
