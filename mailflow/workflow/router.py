"""The routing policy, as one table: each link's rule answers yes (with why) or no; the first
yes decides, and its action acts. Read top to bottom, this is the whole policy."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select

from mailflow.db.models import AccountStatus, Case, MessageStatus, OutboundMessage, Role
from mailflow.outbound.outbox import Email, queue
from mailflow.parse.form import parse_case_form
from mailflow.trust import replyaddr, sender
from mailflow.workflow import accounts, cases
from mailflow.workflow.context import Inbound, Outcome
from mailflow.workflow.held import tell_held
from mailflow.workflow.intake_cases import complete_case, create_case
from mailflow.workflow.registration import handle_registration
from mailflow.workflow.review import handle_reply

Rule = Callable[[Inbound], str | None]
Action = Callable[[Inbound, str], Outcome]

CASE_NUMBER = re.compile(r"\bDERM-\d{4}-\d{6}\b", re.IGNORECASE)


@dataclass(frozen=True)
class Link:
    name: str
    rule: Rule
    action: Action


# --- rules -------------------------------------------------------------------------------


def unreadable(m: Inbound) -> str | None:
    if m.analysis.message is None:
        return m.analysis.rejected_reason or "the message could not be read"
    return None


def automatic(m: Inbound) -> str | None:
    return m.analysis.automatic or None


def unregistered(m: Inbound) -> str | None:
    if m.sender is None:
        return (
            f"mail from {m.analysis.message.from_addr or 'an unknown sender'}, who has no account"
        )
    return None


def not_approved(m: Inbound) -> str | None:
    assert m.sender is not None
    if m.row.released_by:  # an admin released it from quarantine, and is audited for it
        return None
    if m.sender.status != AccountStatus.APPROVED:
        return f"mail from {m.sender.email}, whose account is {m.sender.status}"
    return None


def unverified(m: Inbound) -> str | None:
    assert m.verdict is not None
    if m.verdict.verified or m.row.released_by:
        return None
    return f"the sender could not be verified: {m.verdict.how}"


def _case_addresses(m: Inbound) -> list[str]:
    mail = m.app.config.mail
    return [r for r in m.row.rcpt_to
            if replyaddr.is_reply_address(r, mail.reply_local, mail.domain)]


def ambiguous_recipients(m: Inbound) -> str | None:
    """Two case addresses: which case is it for? Guessing could put one patient's history on
    another's case. (A reply-all that adds cases@ to a case's thread names one case, signed:
    it goes to that case, unless it names another patient: see another_patient.)"""
    if len({r.lower() for r in _case_addresses(m)}) > 1:
        return "the message was sent to the reply addresses of more than one case"
    return None


def another_patient(m: Inbound) -> str | None:
    """A reply-all to a case's thread plus cases@ whose form names a different patient is a
    new case sent the wrong way: putting it on the old case would mix two patients."""
    replies = _case_addresses(m)
    cases_address = _to_local(m, m.app.config.mail.cases_local)
    if not replies or not cases_address:
        return None
    fields = parse_case_form(m.analysis.body).fields
    named = {k: _same_text(fields.get(k) or "") for k in ("patient_name", "date_of_birth")}
    if not any(named.values()):
        return None
    mail = m.app.config.mail
    try:
        bound = replyaddr.parse(m.app.keys.reply_key, replies[0], mail.reply_local, mail.domain)
    except replyaddr.ReplyAddressError:
        return None  # case_reply holds it as a possible forgery
    case = m.session.execute(
        select(Case).where(Case.number == bound.case_number)
    ).scalar_one_or_none()
    if case is None:
        return None
    known = {"patient_name": case.patient.name if case.patient else case.form.get("patient_name"),
             "date_of_birth": (case.patient.date_of_birth if case.patient
                               else case.form.get("date_of_birth"))}
    if any(value and known[k] and value != _same_text(known[k]) for k, value in named.items()):
        return (f"sent to {case.number}'s reply address and to {cases_address}, "
                "with a form naming another patient: a new case or a reply?")
    return None


def _same_text(value: str) -> str:
    return " ".join(value.casefold().split())


def attached(m: Inbound) -> str | None:
    """An admin attached this held message to a case (audited)."""
    if m.row.attached_by and m.row.case_id is not None:
        return f"attached to a case by {m.row.attached_by}"
    return None


def to_reply_address(m: Inbound) -> str | None:
    mail = m.app.config.mail
    for rcpt in m.row.rcpt_to:
        if replyaddr.is_reply_address(rcpt, mail.reply_local, mail.domain):
            return rcpt
    return None


def to_register(m: Inbound) -> str | None:
    return _to_local(m, m.app.config.mail.register_local)


def to_help_or_empty(m: Inbound) -> str | None:
    if _to_local(m, m.app.config.mail.help_local):
        return "a message to help@"
    return "an empty message" if m.analysis.is_empty else None


def not_a_provider(m: Inbound) -> str | None:
    assert m.sender is not None
    return None if m.sender.role == Role.PROVIDER else f"{m.sender.role}s cannot submit cases"


def to_cases(m: Inbound) -> str | None:
    return _to_local(m, m.app.config.mail.cases_local)


def always(m: Inbound) -> str | None:
    return "no rule matched"


def _to_local(m: Inbound, local: str) -> str | None:
    wanted = m.app.config.address(local)
    return wanted if any(r.strip().lower() == wanted for r in m.row.rcpt_to) else None


# --- actions -----------------------------------------------------------------------------


def hold(code: str) -> Action:
    def action(m: Inbound, why: str) -> Outcome:
        return Outcome.hold(code, code, why)

    return action


def answer_unreadable(m: Inbound, why: str) -> Outcome:
    """A known, signed-in sender is told what was wrong; anyone else is held (no backscatter)."""
    row = m.row
    account = accounts.find(m.session, row.auth_user) if row.auth_user else None
    if (
        account is None
        or account.status != AccountStatus.APPROVED
        or row.auth_user != row.mail_from.lower()
    ):
        return Outcome.hold("unreadable", m.analysis.rejected_code, why)
    queue(
        m.app,
        m.session,
        Email(
            kind="rejected",
            template="rejected",
            to=account.email,
            context={"reason": why},
            recipient=account,
        ),
        cause_message_id=row.id,
    )
    return Outcome.done("unreadable", f"sender told the message could not be read: {why}")


def send_help(m: Inbound, why: str) -> Outcome:
    assert m.sender is not None and m.analysis.message is not None
    queue(
        m.app,
        m.session,
        Email(
            kind="help",
            template="help",
            to=m.sender.email,
            recipient=m.sender,
            in_reply_to=m.analysis.message.message_id,
        ),
        cause_message_id=m.row.id,
    )
    return Outcome.done("help", f"instructions sent ({why})")


def answer_not_provider(m: Inbound, why: str) -> Outcome:
    assert m.sender is not None
    queue(
        m.app,
        m.session,
        Email(
            kind="rejected",
            template="rejected",
            to=m.sender.email,
            context={
                "reason": f"Only referring providers can submit cases; "
                f"your account is a {m.sender.role} account."
            },
            recipient=m.sender,
        ),
        cause_message_id=m.row.id,
    )
    return Outcome.done("not-provider", f"sender told: {why}")


def to_attached_case(m: Inbound, why: str) -> Outcome:
    """As a reply on the case an admin chose: the sender must still be its provider or its
    dermatologist (handle_reply holds anyone else)."""
    if m.sender is None:
        return Outcome.hold("attached", "unregistered", "the sender has no account")
    case = m.session.execute(
        select(Case).where(Case.id == m.row.case_id).with_for_update()
    ).scalar_one()
    if case.state == cases.S.INCOMPLETE and m.sender.id == case.provider_id:
        return complete_case(m, case)
    return handle_reply(m, case)


def case_reply(m: Inbound, address: str) -> Outcome:
    app, session = m.app, m.session
    mail = app.config.mail
    message = m.analysis.message
    assert m.sender is not None and message is not None
    try:
        bound = replyaddr.parse(app.keys.reply_key, address, mail.reply_local, mail.domain)
    except replyaddr.ReplyAddressError as exc:
        return Outcome.hold("case-reply", "forged-address", f"{exc}; held as a possible forgery")
    # locked: another worker may be moving the same case (PostgreSQL reads do not wait)
    case = session.execute(
        select(Case).where(Case.number == bound.case_number).with_for_update()
    ).scalar_one_or_none()
    if case is None:
        return Outcome.hold(
            "case-reply", "unknown-case", f"a reply to {bound.case_number}, which does not exist"
        )
    if bound.participant_id != m.sender.id:
        return Outcome.hold(
            "case-reply",
            "wrong-participant",
            f"a reply to {case.number} from {m.sender.email}, but that reply address "
            "was issued to another participant",
        )
    disagreement = _signals_disagree(m, case)
    if disagreement:
        return Outcome.hold("case-reply", "signals-disagree", disagreement)
    if case.state == cases.S.INCOMPLETE and m.sender.id == case.provider_id:
        return complete_case(m, case)
    return handle_reply(m, case)


def _signals_disagree(m: Inbound, case: Case) -> str:
    """The reply address, our Message-IDs it answers, and the subject must name one case."""
    message = m.analysis.message
    assert message is not None
    ids = [*message.in_reply_to, *message.references]
    if ids:
        referenced = (
            m.session.execute(
                select(OutboundMessage.case_id).where(OutboundMessage.message_id.in_(ids))
            )
            .scalars()
            .all()
        )
        other = {cid for cid in referenced if cid is not None and cid != case.id}
        if other:
            return f"a reply to {case.number} that answers an email about another case"
    numbers = {n.upper() for n in CASE_NUMBER.findall(message.subject)}
    if numbers and case.number not in numbers:
        return f"a reply to {case.number} whose subject names {', '.join(sorted(numbers))}"
    return ""


CHAIN: tuple[Link, ...] = (
    Link("automatic", automatic, hold("automatic")),
    Link("unreadable", unreadable, answer_unreadable),
    Link("attached", attached, to_attached_case),
    Link("ambiguous", ambiguous_recipients, hold("ambiguous-recipients")),
    Link("registration", to_register, handle_registration),
    Link("unregistered", unregistered, hold("unregistered")),
    Link("not-approved", not_approved, hold("not-approved")),
    Link("unverified", unverified, hold("unverified")),
    Link("another-patient", another_patient, hold("another-patient")),
    Link("case-reply", to_reply_address, case_reply),
    Link("help", to_help_or_empty, send_help),
    Link("not-provider", not_a_provider, answer_not_provider),
    Link("new-case", to_cases, create_case),
    Link("no-route", always, hold("no-route")),
)


def route(m: Inbound) -> Outcome:
    if m.analysis.message is not None:
        m.sender = (
            accounts.find(m.session, m.analysis.message.from_addr)
            if m.analysis.message.from_addr
            else None
        )
        m.verdict = sender.verify(m.row, m.analysis.message, m.app.config.trust)
    for link in CHAIN:
        why = link.rule(m)
        if why:
            outcome = link.action(m, why)
            if outcome.status == MessageStatus.QUARANTINED:
                tell_held(m, outcome)
            return outcome
    raise AssertionError("the chain ends with a rule that always matches")
