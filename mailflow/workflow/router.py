"""The routing policy: the trust step, then the top chain (workflow/chains.py runs it).

The trust step decides once who sent the message and whether they proved it; every rule
after it reads that decision (Inbound.trust), none makes it. The top chain's rows answer yes
(with why) or no; the first yes decides. Two rows jump: replies on a case's thread go to the
case-thread chain (thread_chain), which jumps to the dermatologist-answer chain
(answer_chain). Read top to bottom, these tables are the whole policy."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from mailflow.db.models import AccountStatus, Case, MessageStatus, Role
from mailflow.db.smime_models import CertStatus
from mailflow.outbound.outbox import Email, queue
from mailflow.parse.form import parse_case_form
from mailflow.trust import replyaddr, sender
from mailflow.trust.sender import Verdict
from mailflow.workflow import accounts, certificates
from mailflow.workflow.chains import Row, otherwise, run
from mailflow.workflow.context import Inbound, Outcome, Trust
from mailflow.workflow.held import tell_held
from mailflow.workflow.intake_cases import create_case
from mailflow.workflow.registration import handle_registration
from mailflow.workflow.thread_chain import attached_reply, case_reply

Action = Callable[[Inbound, str], Outcome]
UNREAD = Verdict(False, "the message could not be read")


def trust_step(m: Inbound) -> Trust:
    """Who sent the message (the account its From: names) and whether they proved it: decided
    here once, before any rule runs; the rules only read it."""
    message = m.analysis.message
    if message is None:
        return Trust(sender=None, verdict=UNREAD, released=bool(m.row.released_by))
    account = accounts.find(m.session, message.from_addr) if message.from_addr else None
    verdict = sender.verify(m.row, message, m.app.config.trust, m.checked)
    signed = m.smime.signer if m.smime is not None and not m.smime.problem_code else None
    if not verdict.verified and signed is not None and message.from_addr in signed.emails:
        # a signature that chains to the trust anchors, by a certificate naming From: (checked
        # in crypto/smime.py, and here against the From: the account was found by, which
        # the parser may read differently): Direct's proof of the sender, without SMTP AUTH
        verdict = Verdict(True, f"S/MIME signature (certificate from {signed.issuer_cn})")
    return Trust(sender=account, verdict=verdict, released=bool(m.row.released_by))


# --- rules -------------------------------------------------------------------------------


def unreadable(m: Inbound) -> str | None:
    if m.analysis.message is None:
        return m.analysis.rejected_reason or "the message could not be read"
    return None


def smime_failed(m: Inbound) -> str | None:
    """An S/MIME layer failed its check (crypto/smime.py), or an admin revoked the signer's
    certificate: nothing in the message was read."""
    if m.smime is None:
        return None
    if m.smime.problem_code:
        return m.smime.problem
    signer = m.smime.signer
    if _signer_not_from(m):
        assert signer is not None and m.analysis.message is not None
        return (f"the message was signed by {', '.join(signer.emails) or 'nobody'} but is "
                f"from {m.analysis.message.from_addr or 'no address'}")
    if signer is not None and m.sender is not None and any(
            c.fingerprint == signer.fingerprint and c.status == CertStatus.REVOKED
            for c in certificates.listed(m.session, m.sender)):
        return "the message was signed with a certificate an admin revoked"
    return None


def _signer_not_from(m: Inbound) -> bool:
    """crypto/smime.py compared the signer with its own reading of From:; the account is the
    parser's (the first address it finds clean), which odd headers can make another one."""
    signer, message = m.smime.signer if m.smime is not None else None, m.analysis.message
    return signer is not None and message is not None and message.from_addr not in signer.emails


def hold_smime(m: Inbound, why: str) -> Outcome:
    assert m.smime is not None
    code = m.smime.problem_code or (
        "smime-signer-mismatch" if _signer_not_from(m) else "smime-revoked")
    return Outcome.hold("smime", code, why)


def new_certificate(m: Inbound) -> str | None:
    signer = m.smime.signer if m.smime is not None else None
    if signer is None or m.sender is None:
        return None
    if any(c.fingerprint == signer.fingerprint
           for c in certificates.listed(m.session, m.sender)):
        return None
    return "a signed message carried a certificate not seen before"


def offer_certificate(m: Inbound, why: str) -> Outcome | None:
    """Records, passes on: the certificate waits for an admin's approval."""
    assert m.smime is not None and m.smime.signer is not None and m.sender is not None
    certificates.offer(m.session, m.sender, m.smime.signer, m.row.id)
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
    if m.trusted.released:  # an admin released it from quarantine, and is audited for it
        return None
    if m.sender.status != AccountStatus.APPROVED:
        return f"mail from {m.sender.email}, whose account is {m.sender.status}"
    return None


def unverified(m: Inbound) -> str | None:
    if m.verdict.verified or m.trusted.released:
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


CHAIN: tuple[Row[Inbound], ...] = (
    Row("smime", smime_failed, hold_smime,
        "an S/MIME signature or encryption that fails its check: nothing in it is read"),
    Row("automatic", automatic, hold("automatic"),
        "auto-replies and bounces are never answered (no mail loops)"),
    Row("unreadable", unreadable, answer_unreadable,
        "a signed-in sender is told what was wrong; anyone else is held"),
    Row("attached", attached, attached_reply,
        "jump: an admin attached it to a case (the case-thread chain, from its case rows)"),
    Row("ambiguous-recipients", ambiguous_recipients, hold("ambiguous-recipients"),
        "two case addresses: guessing could mix two patients"),
    Row("registration", to_register, handle_registration, "a request for an account"),
    Row("unregistered", unregistered, hold("unregistered"), "a sender with no account"),
    Row("not-approved", not_approved, hold("not-approved"),
        "an account not approved (unless an admin released the message)"),
    Row("unverified", unverified, hold("unverified"),
        "the sender did not prove it sent it (unless an admin released the message)"),
    Row("smime-certificate", new_certificate, offer_certificate,
        "records, passes on: a new certificate from a signed message waits for an admin"),
    Row("another-patient", another_patient, hold("another-patient"),
        "a reply-all plus cases@ whose form names another patient"),
    Row("case-reply", to_reply_address, case_reply, "jump: the case-thread chain"),
    Row("help", to_help_or_empty, send_help, "help@ or an empty message: instructions"),
    Row("not-provider", not_a_provider, answer_not_provider,
        "only referring providers submit cases: the sender is told"),
    Row("new-case", to_cases, create_case, "a new case to cases@"),
    Row("no-route", otherwise("no rule matched"), hold("no-route"),
        "an address we do not use"),
)


def route(m: Inbound) -> Outcome:
    m.trust = trust_step(m)
    outcome = run(CHAIN, m)
    if outcome.status == MessageStatus.QUARANTINED:
        tell_held(m, outcome)
    return outcome
