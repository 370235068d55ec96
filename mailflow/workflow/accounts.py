"""Accounts: providers, dermatologists, admins. Every change is audited."""

from __future__ import annotations

import contextlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.db.models import Account, AccountStatus, Role, utcnow

_hasher = PasswordHasher()
_dummy_hash: list[str] = []  # made on first use (hashing takes a moment)
MIN_PASSWORD_LENGTH = 10


class AccountError(Exception):
    pass


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    local, at, domain = email.partition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in email):
        raise AccountError(f"{email!r} is not an email address")
    return email


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def find(session: Session, email: str) -> Account | None:
    return session.execute(
        select(Account).where(func.lower(Account.email) == email.strip().lower())
    ).scalar_one_or_none()


def add(
    session: Session,
    *,
    email: str,
    name: str,
    role: str,
    password: str | None = None,
    approved: bool = False,
    actor: str = "cli",
    **details: str,
) -> Account:
    if role not in Role.ALL:
        raise AccountError(f"role must be one of {', '.join(Role.ALL)}, not {role!r}")
    email = normalise_email(email)
    if find(session, email) is not None:
        raise AccountError(f"an account for {email} already exists")
    if not name.strip():
        raise AccountError("the name must not be empty")
    account = Account(
        email=email,
        name=name.strip(),
        role=role,
        status=AccountStatus.APPROVED if approved else AccountStatus.PENDING,
        password_hash=hash_password(password) if password else None,
        approved_at=utcnow() if approved else None,
        **details,
    )
    session.add(account)
    session.flush()
    audit.record(
        session,
        "account.created",
        actor=actor,
        entity="account",
        entity_id=account.id,
        detail={"role": role, "status": account.status},
    )
    return account


def approve(session: Session, email: str, actor: str = "cli") -> Account:
    account = find(session, email)
    if account is None:
        raise AccountError(f"no account for {email}")
    if account.status == AccountStatus.APPROVED:
        return account
    account.status = AccountStatus.APPROVED
    account.approved_at = utcnow()
    audit.record(session, "account.approved", actor=actor, entity="account", entity_id=account.id)
    return account


def check_password(account: Account, password: str) -> bool:
    if not account.password_hash:
        return waste_a_check(password)
    try:
        return _hasher.verify(account.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def waste_a_check(password: str) -> bool:
    """A check that always fails and takes as long as a real one: an unknown login (or one
    with no password yet) answers in the same time as a wrong password, so the timing does
    not tell which accounts exist. Always False."""
    if not _dummy_hash:
        _dummy_hash.append(_hasher.hash(secrets.token_hex(16)))
    with contextlib.suppress(VerificationError, InvalidHashError):
        _hasher.verify(_dummy_hash[0], password or "-")
    return False


def list_accounts(session: Session, role: str | None = None) -> list[Account]:
    query = select(Account).order_by(Account.id)
    if role:
        query = query.where(Account.role == role)
    return list(session.execute(query).scalars())


def set_pdf_password(session: Session, email: str, password: str | None, actor: str = "cli"
                     ) -> Account:
    account = find(session, email)
    if account is None:
        raise AccountError(f"no account for {email}")
    if account.role != Role.PROVIDER:
        raise AccountError(f"{email} is not a provider: only providers receive reports")
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    account.pdf_password = password
    audit.record(session, "account.pdf_password", actor=actor, entity="account",
                 entity_id=account.id, detail={"protected": password is not None})
    return account


def set_totp(session: Session, email: str, secret: str | None, actor: str = "cli",
             via: str = "cli") -> Account:
    """Turn an account's authenticator step on (a new secret) or off (None)."""
    account = find(session, email)
    if account is None:
        raise AccountError(f"no account for {email}")
    if account.role not in (Role.ADMIN, Role.DERMATOLOGIST, Role.PROVIDER):
        raise AccountError(f"{email} does not sign in on the web")
    account.totp_secret = secret
    audit.record(session, "account.totp_on" if secret else "account.totp_off", actor=actor,
                 entity="account", entity_id=account.id, detail={"via": via})
    return account
