"""Provider registration by email, and approval.

A registration (to register@) creates a *pending* account and is answered by nobody: its
sender is not verified, and a reply could go to a forged address. An admin approves it (web or
`mailflow users approve`); the provider then receives the confirmation: how to send a case,
the photo guide, the blank form, and a one-time, expiring link to set the password.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from mailflow.app import App
from mailflow.db.models import Account, AccountStatus, Role, utcnow
from mailflow.outbound.outbox import Email, queue
from mailflow.parse.registration import parse_registration
from mailflow.trust import tokens
from mailflow.workflow import accounts
from mailflow.workflow.context import Inbound, Outcome

LINK_VALID = timedelta(hours=72)


def handle_registration(m: Inbound, _why: str) -> Outcome:
    message = m.analysis.message
    assert message is not None
    form = parse_registration(m.analysis.body or message.text)
    email = form.fields.get("email") or message.from_addr
    if form.problems:
        return Outcome.hold("registration", "registration-incomplete",
                            f"a registration from {email} that cannot be used: "
                            + "; ".join(form.problems))
    if accounts.find(m.session, email) is not None:
        return Outcome.hold("registration", "already-registered",
                            f"a registration for {email}, which already has an account")
    account = accounts.add(
        m.session, email=email, name=form.fields["name"], role=Role.PROVIDER,
        actor=f"register:{message.from_addr}", practice=form.fields["practice"],
        npi=form.fields["npi"], phone=form.fields["phone"],
        license_state=form.fields["license_state"],
        credentials=form.fields.get("credentials", ""),
    )
    return Outcome.done("registration",
                        f"registration of {account.email} is pending an admin's approval")


def set_password_link(app: App, account: Account) -> str:
    token = tokens.make(app.keys.token_key, account.id, account.password_hash, utcnow(),
                        LINK_VALID)
    return f"{app.config.web_url}/set-password/{token}"


def approve(app: App, session: Session, email: str, actor: str) -> Account:
    """Approve an account; a provider is told how to start, with a set-password link."""
    account = accounts.find(session, email)
    was_pending = account is not None and account.status != AccountStatus.APPROVED
    account = accounts.approve(session, email, actor)
    if was_pending and account.role == Role.PROVIDER:
        queue(app, session, Email(
            kind="registration_confirmed", template="registration_confirmed",
            to=account.email, recipient=None, automatic=True,
            context={"account": account, "link": set_password_link(app, account),
                     "link_hours": int(LINK_VALID.total_seconds() // 3600),
                     "has_password": bool(account.password_hash)},
        ))
    return account
