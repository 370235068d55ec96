"""Accounts: providers, dermatologists, admins. Every change is audited."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.db.models import Account, AccountStatus, Role, utcnow

# the password rules live in trust/passwords.py (the doors check there); the account commands
# below use them, and callers keep naming them accounts.find, accounts.AccountError, ...
from mailflow.trust.passwords import MIN_PASSWORD_LENGTH as MIN_PASSWORD_LENGTH
from mailflow.trust.passwords import AccountError as AccountError
from mailflow.trust.passwords import find_account as find
from mailflow.trust.passwords import hash_password as hash_password


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    local, at, domain = email.partition("@")
    if not at or not local or "." not in domain or any(c.isspace() for c in email):
        raise AccountError(f"{email!r} is not an email address")
    return email


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
