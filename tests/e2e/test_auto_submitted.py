"""DESIGN §3 invariant 7 (no mail loops): every kind of email we send carries
`Auto-Submitted: auto-replied`, so no well-behaved auto-responder answers it.

Every template under templates/email/ is sent by a real flow here (spool -> worker -> outbox,
the report renderer, the SLA enforcer, registration), with time-machine setting the hour; the
real outbox then delivers them all to the relay sink, where the header is checked on each."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import time_machine
from sqlalchemy import select

from mailflow.app import App
from mailflow.db.models import Case, OutboundMessage
from mailflow.db.session import transaction
from mailflow.outbound.delivery import deliver_due
from mailflow.workflow import accounts, registration
from mailflow.workflow.enforcer import fire_due
from mailflow.workflow.report_runner import deliver_pending_reports
from tests.conftest import ROOT
from tests.support.cases import CASES, deliver, three_photos
from tests.support.mail import FULL_FORM, case_email, reply_to
from tests.support.registration import REGISTER
from tests.support.review import ANSWER
from tests.support.sink import Delivered, RelaySink

ET = ZoneInfo("America/New_York")
HELP = "help@derm.localhost"
# kind (as the outbox records it) -> the template it is written with
TEMPLATE_OF = {
    "ack": "ack", "ack_incomplete": "ack", "help": "help", "derm_case": "derm_case",
    "more_info": "more_info", "info_forward": "info_forward",
    "answer_incomplete": "answer_incomplete", "consult": "consult_ready",
    "comment_forward": "comment_forward", "not_added": "not_your_case",
    "case_closed": "case_closed", "held": "held", "rejected": "rejected",
    "registration_form": "registration_form", "registration_confirmed": "registration_confirmed",
    "password_link": "password_link", "urgency_changed": "urgency", "urgent_page": "urgent_page",
    "case_stuck": "case_stuck", "sla_reminder": "sla_reminder", "sla_escalation": "sla_escalation",
}


def et(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=ET)


def templates() -> set[str]:
    folder = ROOT / "templates" / "email"
    return {p.name.split(".")[0] for p in folder.glob("*.j2") if not p.name.startswith("_")}


def last_to(app: App, who: str, kind: str) -> Delivered:
    """The last email of `kind` queued for `who`, as its relay will receive it."""
    with app.sessions() as session:
        row = session.execute(
            select(OutboundMessage).where(OutboundMessage.to_addr == who,
                                          OutboundMessage.kind == kind)
            .order_by(OutboundMessage.id.desc()).limit(1)).scalar_one()
        return Delivered(row.from_addr, (row.to_addr,), app.blobs.get(row.blob_sha))


def reply(app: App, to: Delivered, sender: str, body: str) -> None:
    msg, address = reply_to(to, sender, body)
    deliver(app, msg.as_bytes(), sender, address)
    deliver_pending_reports(app)  # the consult report is rendered after the answer is kept


def new_case(app: App, provider: str, form: str = FULL_FORM,
             photos: list[tuple[str, bytes]] | None = None) -> None:
    photos = three_photos() if photos is None else photos
    deliver(app, case_email(provider, CASES, form, photos).as_bytes(), provider, CASES)


def assignee_of_last_case(app: App) -> str:
    with app.sessions() as session:
        case = session.execute(select(Case).order_by(Case.id.desc()).limit(1)).scalar_one()
        assert case.assignee is not None
        return case.assignee.email


def review_path(app: App, provider: str) -> None:
    """A case through questions, a refused answer, the report, a conversation and the close."""
    new_case(app, provider)
    derm = assignee_of_last_case(app)
    reply(app, last_to(app, derm, "derm_case"), derm, "More info: Any new soap?")
    reply(app, last_to(app, provider, "more_info"), provider, "No new soap.")
    info = last_to(app, derm, "info_forward")
    reply(app, info, derm, "Plan: emollients")  # no diagnosis: refused
    reply(app, info, derm, ANSWER)
    consult = last_to(app, provider, "consult")
    reply(app, info, derm, "Please send a photo in 2 weeks.")
    reply(app, consult, provider, "")  # nothing new: not added
    reply(app, consult, provider, "Thanks, all clear.\nClose")


def edges(app: App, provider: str) -> None:
    """Incomplete, held, refused and urgent mail, help, and a case nobody is left to take."""
    deliver(app, case_email(provider, HELP, "").as_bytes(), provider, HELP)
    new_case(app, provider, FULL_FORM.replace("Date of birth: 1961-03-04\n", ""),
             three_photos()[1:])
    forged = "case+derm-2026-999999.abcdef@derm.localhost"
    deliver(app, case_email(provider, forged, "An update.").as_bytes(), provider, forged)
    too_many = case_email(provider, CASES, FULL_FORM)
    for i in range(500):
        too_many.add_attachment(b"x", maintype="application", subtype="octet-stream",
                                filename=f"f{i}.bin")
    deliver(app, too_many.as_bytes(), provider, CASES)
    new_case(app, provider)
    reply(app, last_to(app, provider, "ack"), provider, "Urgency: urgent")
    for _ in range(2):  # each dermatologist declines in turn: nobody is left
        derm = assignee_of_last_case(app)
        reply(app, last_to(app, derm, "derm_case"), derm, "Decline: conflict of interest")


def registrations(app: App) -> None:
    stranger = "robin@lakeside.test"
    deliver(app, case_email(stranger, REGISTER, "hello").as_bytes(), stranger, REGISTER,
            auth=False)  # unreadable: answered with the form
    with transaction(app.sessions) as session:
        accounts.add(session, email="new@clinic.test", name="Dr New", role="provider",
                     password=None, approved=False, practice="Hill Clinic")
        registration.approve(app, session, "new@clinic.test", actor="admin@derm.localhost")
        registration.resend_link(app, session, "new@clinic.test", actor="admin@derm.localhost")


def test_every_kind_of_email_we_send_is_marked_auto_submitted(
    app: App, sink: RelaySink, provider: str, dermatologists: tuple[str, str],
) -> None:
    assert set(TEMPLATE_OF.values()) == templates(), "a template with no flow here"
    with time_machine.travel(et(2026, 11, 30, 10, 0), tick=False):  # Monday, in hours
        review_path(app, provider)
        edges(app, provider)
        registrations(app)
    for minute in (46, 55, 90):  # the urgent case (1 working hour): 75%, 90%, then late
        with time_machine.travel(et(2026, 11, 30, 10, 0) + timedelta(minutes=minute), tick=False):
            fire_due(app)
    while deliver_due(app):
        pass
    with app.sessions() as session:
        kinds = list(session.execute(select(OutboundMessage.kind)).scalars())
    assert set(kinds) >= set(TEMPLATE_OF), f"not sent: {set(TEMPLATE_OF) - set(kinds)}"
    assert len(sink.messages) == len(kinds)  # every one reached the relay
    unmarked = [(m.rcpt_tos, str(m.message["Subject"])) for m in sink.messages
                if m.message["Auto-Submitted"] != "auto-replied"]
    assert unmarked == []

