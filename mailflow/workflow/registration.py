"""Provider registration (by email to register@, or the web form), approval, rejection, and
the one-time links that set a password.

A registration creates a *pending* account and is not confirmed to anyone: its address is not
verified, and a reply could go to a forged one. An admin approves it (web or
`mailflow users approve`); the provider then receives the confirmation: how to send a case,
the photo guide, the blank form, and a one-time, expiring link to set the password. The one
exception to "no reply": an email to register@ that cannot be used is answered with the blank
form, at most `form_replies_per_day` times a day per address (register@ expects strangers).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.app import App
from mailflow.db.models import Account, AccountStatus, OutboundMessage, Role, utcnow
from mailflow.outbound.outbox import Email, queue
from mailflow.parse.registration import Registration, parse_registration
from mailflow.trust import tokens
from mailflow.workflow import accounts
from mailflow.workflow.context import Inbound, Outcome

LINK_VALID = timedelta(hours=72)
FORM_REPLY = "registration_form"
WEB_ROLES = (Role.ADMIN, Role.DERMATOLOGIST, Role.PROVIDER)


def register_provider(session: Session, form: Registration, actor: str) -> Account | None:
    """The one way a provider registers, whichever door: a pending account, or None if the
    address already has one. `form` has been checked (no problems) and carries the email."""
    fields = form.fields
    if form.problems or accounts.find(session, fields["email"]) is not None:
        return None
    return accounts.add(
        session, email=fields["email"], name=fields["name"], role=Role.PROVIDER, actor=actor,
        practice=fields["practice"], npi=fields["npi"], phone=fields["phone"],
        license_state=fields["license_state"], credentials=fields.get("credentials", ""),
    )


def handle_registration(m: Inbound, _why: str) -> Outcome:
    message = m.analysis.message
    assert message is not None
    form = parse_registration(m.analysis.body or message.text)
    email = form.fields.get("email") or message.from_addr
    if form.problems:
        answered = _answer_with_form(m)
        return Outcome.hold("registration", "registration-incomplete",
                            f"a registration from {email} that cannot be used: "
                            + "; ".join(form.problems)
                            + ("; the sender was sent the form" if answered else ""))
    form = Registration({**form.fields, "email": email}, ())
    account = register_provider(m.session, form, actor=f"register:{message.from_addr}")
    if account is None:
        return Outcome.hold("registration", "already-registered",
                            f"a registration for {email}, which already has an account")
    return Outcome.done("registration",
                        f"registration of {account.email} is pending an admin's approval")


def _answer_with_form(m: Inbound) -> bool:
    """Send the blank form to the envelope sender (RFC 3834), unless this address had it
    `form_replies_per_day` times in the last day."""
    to = m.row.mail_from.strip().lower()
    limit = m.app.config.registration.form_replies_per_day
    if not to or limit == 0:
        return False
    sent = m.session.scalar(select(func.count()).select_from(OutboundMessage).where(
        OutboundMessage.kind == FORM_REPLY, func.lower(OutboundMessage.to_addr) == to,
        OutboundMessage.created_at >= utcnow() - timedelta(days=1)))
    if (sent or 0) >= limit:
        return False
    queue(m.app, m.session, Email(kind=FORM_REPLY, template=FORM_REPLY, to=to,
                                  reply_to=m.app.config.address(m.app.config.mail.register_local)),
          cause_message_id=m.row.id)
    return True


def set_password_link(app: App, account: Account, valid: timedelta = LINK_VALID) -> str:
    token = tokens.make(app.keys.token_key, account.id, account.password_hash, utcnow(), valid)
    return f"{app.config.web_url}/set-password/{token}"


def approve(app: App, session: Session, email: str, actor: str) -> tuple[Account, bool]:
    """Approve an account; a provider is told how to start, with a set-password link.
    (account, False) if it was approved already: nothing is done or sent then."""
    account = accounts.find(session, email)
    if account is not None and account.status == AccountStatus.APPROVED:
        return account, False
    account = accounts.approve(session, email, actor)
    if account.role == Role.PROVIDER:
        queue(app, session, Email(
            kind="registration_confirmed", template="registration_confirmed",
            to=account.email, recipient=None, automatic=True,
            context={"account": account, "link": set_password_link(app, account),
                     "link_hours": int(LINK_VALID.total_seconds() // 3600),
                     "has_password": bool(account.password_hash)},
        ))
    return account, True


def reject(session: Session, email: str, actor: str, reason: str) -> Account:
    """A pending registration is refused; the reason is kept in the audit log. Nothing is
    emailed: the address was never verified."""
    account = accounts.find(session, email)
    if account is None:
        raise accounts.AccountError(f"no account for {email}")
    if account.status != AccountStatus.PENDING:
        raise accounts.AccountError(f"{account.email} is {account.status}, not pending: "
                                    "only a pending registration can be rejected")
    account.status = AccountStatus.REJECTED
    audit.record(session, "account.rejected", actor=actor, entity="account",
                 entity_id=account.id, detail={"reason": " ".join(reason.split())[:500]})
    return account


def resend_link(app: App, session: Session, email: str, actor: str) -> Account:
    """A new set-password link (72 hours) for an approved account that has no password yet:
    the first one expired or was lost."""
    account = accounts.find(session, email)
    if account is None:
        raise accounts.AccountError(f"no account for {email}")
    if account.status != AccountStatus.APPROVED:
        raise accounts.AccountError(f"{account.email} is {account.status}: approve it first")
    if account.password_hash:
        raise accounts.AccountError(f"{account.email} has set a password already; they can "
                                    "use \"Forgot your password?\" on the sign-in page")
    _send_link(app, session, account, LINK_VALID, asked=False)
    audit.record(session, "account.link_resent", actor=actor, entity="account",
                 entity_id=account.id)
    return account


def forgot_password(app: App, session: Session, email: str) -> bool:
    """Someone typed this address on "Forgot your password?": an approved account that signs
    in on the web gets a one-time link; any other address gets nothing (and the caller shows
    the same page either way)."""
    account = accounts.find(session, email) if email.strip() else None
    if (account is None or account.status != AccountStatus.APPROVED
            or account.role not in WEB_ROLES):
        return False
    minutes = app.config.registration.reset_link_minutes
    _send_link(app, session, account, timedelta(minutes=minutes), asked=True)
    audit.record(session, "account.reset_link_sent", actor=account.email, entity="account",
                 entity_id=account.id)
    return True


def _send_link(app: App, session: Session, account: Account, valid: timedelta,
               asked: bool) -> None:
    queue(app, session, Email(
        kind="password_link", template="password_link", to=account.email, recipient=None,
        context={"account": account, "link": set_password_link(app, account, valid),
                 "valid_minutes": int(valid.total_seconds() // 60), "asked": asked},
    ))
