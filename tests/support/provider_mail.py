"""Every email a provider receives, made by the real flow (spool -> worker -> outbox, the
rendered message read back from the outbox's blob) for synthetic cases, time-machine setting
the hour: what the plain-words test reads and the phone test shows in Chromium."""

from __future__ import annotations

import email
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from zoneinfo import ZoneInfo

import time_machine
from sqlalchemy import select

from mailflow.app import App, initialise
from mailflow.db.models import Case, OutboundMessage
from mailflow.db.session import transaction
from mailflow.spool import Arrival, spool
from mailflow.workflow import accounts, registration
from mailflow.workflow.report_runner import deliver_pending_reports
from mailflow.workflow.worker import drain
from tests.conftest import DERMS, PASSWORD, make_config
from tests.support.cases import CASES, three_photos
from tests.support.mail import FULL_FORM, case_email
from tests.support.review import ANSWER

ET = ZoneInfo("America/New_York")
PROVIDER = "doc@clinic.test"
NEWCOMER = "new@clinic.test"
STRANGER = "someone@newclinic.test"
HELP = "help@derm.localhost"
REGISTER = "register@derm.localhost"
# Every kind of email a provider (or someone registering) receives: provider_emails makes each.
KINDS = frozenset({
    "help", "ack", "ack_incomplete", "more_info", "consult", "comment_forward", "not_added",
    "case_closed", "held", "rejected", "registration_confirmed", "urgency_changed",
    "urgency_kept", "password_link", "registration_form",
})


def et(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=ET)


@dataclass(frozen=True)
class Sent:
    kind: str
    message: EmailMessage

    @property
    def text(self) -> str:
        part = self.message.get_body(("plain",))
        return part.get_content().replace("\r\n", "\n")  # type: ignore[union-attr]

    @property
    def html(self) -> str:
        return self.message.get_body(("html",)).get_content()  # type: ignore[union-attr]


@contextmanager
def provider_app(tmp_path: Path, db_url: str) -> Iterator[App]:
    """An app with one approved provider and one dermatologist (who is on duty)."""
    config = make_config(tmp_path, db_url)
    initialise(config)
    application = App.open(config)
    with transaction(application.sessions) as session:
        accounts.add(session, email=PROVIDER, name="Dr Doc", role="provider",
                     password=PASSWORD, approved=True)
        accounts.add(session, email=DERMS[0], name="Dr Derm One", role="dermatologist",
                     password=PASSWORD, approved=True)
    try:
        yield application
    finally:
        application.close()


def deliver(app: App, msg: EmailMessage, sender: str, rcpt: str, auth: bool = True) -> None:
    spool(app, Arrival("smtp", msg.as_bytes(), mail_from=sender, rcpt_to=(rcpt,),
                       auth_user=sender if auth else ""))
    drain(app)
    deliver_pending_reports(app)  # the consult report is rendered after the answer is kept


def sent_to(app: App, address: str) -> list[Sent]:
    with app.sessions() as session:
        rows = session.execute(
            select(OutboundMessage).order_by(OutboundMessage.id)
        ).scalars().all()
        found = [(r.kind, r.blob_sha) for r in rows]
    out = []
    for kind, sha in found:
        msg = email.message_from_bytes(app.blobs.get(sha), policy=default_policy)
        if address in str(msg["To"]):
            out.append(Sent(kind, msg))  # type: ignore[arg-type]
    return out


def last(app: App, address: str, kind: str) -> Sent:
    return [s for s in sent_to(app, address) if s.kind == kind][-1]


def reply(app: App, to: Sent, sender: str, body: str,
          photos: list[tuple[str, bytes]] | None = None) -> None:
    address = to.message["Reply-To"].addresses[0].addr_spec
    quoted = "\n".join("> " + line for line in to.text.splitlines())
    msg = case_email(sender, address, f"{body}\n\nOn Monday, mailflow wrote:\n{quoted}\n",
                     photos or [], subject=f"Re: {to.message['Subject']}",
                     headers={"In-Reply-To": to.message["Message-ID"]})
    deliver(app, msg, sender, address)


def new_case(app: App, form: str = FULL_FORM, photos: list[tuple[str, bytes]] | None = None
             ) -> str:
    deliver(app, case_email(PROVIDER, CASES, form, three_photos() if photos is None else photos),
            PROVIDER, CASES)
    with app.sessions() as session:
        return session.execute(select(Case.number).order_by(Case.id.desc())).scalars().first()


def provider_emails(app: App) -> list[Sent]:
    """One of each email a provider receives, from realistic cases through the real flow."""
    with time_machine.travel(et(2026, 11, 30, 10, 0), tick=False):  # Monday, in hours
        deliver(app, case_email(PROVIDER, HELP, "", []), PROVIDER, HELP)
        new_case(app)  # complete, in hours
        new_case(app, FULL_FORM.replace("Date of birth: 1961-03-04\n", ""),
                 three_photos()[1:])  # incomplete: no date of birth, no photo of the whole area
        incomplete = last(app, PROVIDER, "ack_incomplete")
        reply(app, incomplete, PROVIDER, "Date of birth: 1961-03-04", three_photos()[:1])
        new_case(app, FULL_FORM.replace("Symptoms: itch, worse at night",
                                        "Symptoms: a mole on the back that started to bleed"))
        reply(app, last(app, PROVIDER, "ack"), PROVIDER, "Urgency: urgent")  # as it suggests
    with time_machine.travel(et(2026, 11, 28, 22, 0), tick=False):  # Saturday night
        new_case(app, FULL_FORM.replace("Urgency: routine", "Urgency: urgent"))
        reply(app, last(app, PROVIDER, "ack"), PROVIDER, "Urgency: routine")  # not theirs to lower
    with time_machine.travel(et(2026, 11, 30, 11, 0), tick=False):
        derm_case = [s for s in sent_to(app, DERMS[0]) if s.kind == "derm_case"][0]
        reply(app, derm_case, DERMS[0], "More info: Has the patient used any new soap?")
        reply(app, last(app, PROVIDER, "more_info"), PROVIDER, "No new soap.")
        info = last(app, DERMS[0], "info_forward")
        reply(app, info, DERMS[0], ANSWER)
        consult = last(app, PROVIDER, "consult")
        reply(app, info, DERMS[0], "Please send a photo in 2 weeks.")
        reply(app, consult, PROVIDER, "")  # nothing new: not added
        reply(app, info, DERMS[0], "Close")
        forged = case_email(PROVIDER, "case+derm-2026-999999.abcdef@derm.localhost",
                            "An update on the rash.")
        deliver(app, forged, PROVIDER, "case+derm-2026-999999.abcdef@derm.localhost")
        too_many = case_email(PROVIDER, CASES, FULL_FORM)
        for i in range(500):
            too_many.add_attachment(b"x", maintype="application", subtype="octet-stream",
                                    filename=f"f{i}.bin")
        deliver(app, too_many, PROVIDER, CASES)
        with transaction(app.sessions) as session:
            accounts.add(session, email=NEWCOMER, name="Dr New", role="provider",
                         password=None, approved=False, practice="Hill Clinic")
            registration.approve(app, session, NEWCOMER, actor="admin@derm.localhost")
            registration.resend_link(app, session, NEWCOMER, actor="admin@derm.localhost")
            registration.forgot_password(app, session, PROVIDER)
        deliver(app, case_email(STRANGER, REGISTER, "Hello, I would like to join your service."),
                STRANGER, REGISTER, auth=False)
    return sent_to(app, PROVIDER) + sent_to(app, NEWCOMER) + sent_to(app, STRANGER)
