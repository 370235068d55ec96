"""The routing chains, called directly: one message per outcome row, and what each outcome
leaves behind (the message's status and row name, the case's state, the audit event, the
emails queued). No server and no worker: the message is spooled and `route` decides it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from mailflow.app import App
from mailflow.db.models import Account, AuditEvent, Case, MessageStatus, OutboundMessage
from mailflow.db.session import transaction
from mailflow.workflow import accounts
from mailflow.workflow.answer_chain import ANSWER
from mailflow.workflow.chains import names
from mailflow.workflow.router import CHAIN
from mailflow.workflow.thread_chain import CASE_THREAD, PROVIDER_REPLY
from tests.conftest import PASSWORD
from tests.support.images import skin_photo
from tests.support.mail import FULL_FORM, case_email
from tests.support.routing import latest_case, reply_address, route_now

CASES, HELP, REGISTER = "cases@derm.localhost", "help@derm.localhost", "register@derm.localhost"
OTHER_PROVIDER, STRANGER, PENDING = "dr.other@clinic.test", "who@else.test", "dr.new@clinic.test"
ANSWER_TEXT = """Diagnosis: Nummular eczema
Plan: Triamcinolone 0.1% ointment twice daily for 2 weeks
Follow-up: 4 weeks
In-person visit: not needed
Biopsy: no
"""
FOLLOW_UP = """New case: yes
Reason for referral: the rash came back
Duration: 1 week
Patient consent to photos: yes
"""
QUOTED_ONLY = "\n\nOn Mon, 2 Nov 2026 at 10:00, mailflow wrote:\n> Case received.\n"


def photos(n: int = 3) -> list[tuple[str, bytes]]:
    names_ = ("distribution.jpg", "closeup_front.jpg", "oblique_side.jpg")
    return [(names_[i], skin_photo(width=640, height=480, seed=i + 1)) for i in range(n)]


class World:
    """A provider, two dermatologists, another provider, and one case in the state asked."""

    def __init__(self, app: App, provider: str, derms: tuple[str, str]) -> None:
        self.app, self.provider = app, provider
        with transaction(app.sessions) as session:
            accounts.add(session, email=OTHER_PROVIDER, name="Dr Other", role="provider",
                         password=PASSWORD, approved=True, license_state="NY")
            accounts.add(session, email=PENDING, name="Dr New", role="provider",
                         password=PASSWORD, approved=False, license_state="NY")
        self.number = self.earlier = ""
        self.derms = derms

    @property
    def derm(self) -> str:
        """The dermatologist the case is assigned to."""
        with self.app.sessions() as session:
            case = session.execute(select(Case).where(Case.number == self.number)).scalar_one()
            assert case.assignee is not None
            return case.assignee.email

    @property
    def other_derm(self) -> str:
        return next(d for d in self.derms if d != self.derm)

    def who(self, email: str) -> str:
        """A recipient by their part in the case."""
        if email == self.provider:
            return "provider"
        return "derm" if email in self.derms else email

    def open(self, state: str) -> None:
        if state == "none":
            return
        count = 2 if state == "incomplete" else 3
        for _ in range(2 if state == "two-cases" else 1):
            self.earlier = self.number
            route_now(self.app, case_email(self.provider, CASES, FULL_FORM, photos(count)),
                      self.provider, CASES)
            self.number = latest_case(self.app).number
        if state == "needs_info":
            self.from_derm("More info: How long has the rash been there?")
        if state == "reviewed":
            self.from_derm(ANSWER_TEXT)

    def on_case(self, sender: str, body: str, subject: str = "",
                files: list[tuple[str, bytes]] | None = None, auth: bool = True,
                address_of: str = "") -> tuple[int, object]:
        address = reply_address(self.app, self.number, address_of or sender)
        msg = case_email(sender, address, body, files or [],
                         subject=subject or f"Re: Case {self.number}")
        return route_now(self.app, msg, sender, address, auth)

    def from_derm(self, body: str) -> tuple[int, object]:
        return self.on_case(self.derm, body)


@dataclass(frozen=True)
class Expect:
    name: str  # the outcome's row: the route, or the held reason code
    state: str | None  # the case's state after it (None: no case)
    audit: str | None  # the audit event it writes, if any
    emails: tuple[tuple[str, str], ...]  # (kind, to whom), sorted


Send = Callable[[World], tuple[int, object]]


def to(rcpt: str, sender: str = "", body: str = FULL_FORM, auth: bool = True,
       headers: dict[str, str] | None = None) -> Send:
    def act(w: World) -> tuple[int, object]:
        who = sender or w.provider
        msg = case_email(who, rcpt, body, photos(), headers=headers)
        return route_now(w.app, msg, who, rcpt, auth)
    return act


def reply(by: str, body: str, **kw: object) -> Send:
    def act(w: World) -> tuple[int, object]:
        people: dict[str, Callable[[], str]] = {
            "provider": lambda: w.provider, "derm": lambda: w.derm,
            "other-derm": lambda: w.other_derm, "other-provider": lambda: OTHER_PROVIDER}
        sender = people[by]()
        # kw belongs to the table row, shared by every run of it: read it, never pop it
        options = {k: v for k, v in kw.items() if k != "address"}
        address_of = w.derm if kw.get("address") == "derm-address" else ""
        return w.on_case(sender, body, address_of=address_of, **options)  # type: ignore[arg-type]
    return act


def forged(w: World) -> tuple[int, object]:
    address = reply_address(w.app, w.number, w.provider).replace(".", "x", 1)
    return route_now(w.app, case_email(w.provider, address, "Hello"), w.provider, address)


def unknown_case(w: World) -> tuple[int, object]:
    mail = w.app.config.mail
    from mailflow.trust import replyaddr

    with w.app.sessions() as session:
        me = session.execute(select(Account).where(Account.email == w.provider)).scalar_one()
        address = replyaddr.make(w.app.keys.reply_key, mail.reply_local, mail.domain,
                                 "DERM-2026-999999", me.id)
    return route_now(w.app, case_email(w.provider, address, "Hello"), w.provider, address)


def two_cases(w: World) -> tuple[int, object]:
    first = reply_address(w.app, w.earlier, w.provider)
    second = reply_address(w.app, w.number, w.provider)
    msg = case_email(w.provider, first, "Hello")
    return route_now(w.app, msg, w.provider, (first, second))


HOLD, DONE = MessageStatus.QUARANTINED, MessageStatus.PROCESSED
NONE: tuple[tuple[str, str], ...] = ()
# row name -> (the case's state first, the message, what follows)
TABLE: dict[str, tuple[str, Send, str, Expect]] = {
    # the top chain
    "automatic": ("none", to(CASES, headers={"Auto-Submitted": "auto-replied"}), HOLD,
                  Expect("automatic", None, None, NONE)),
    "ambiguous-recipients": ("two-cases", two_cases, HOLD,
                             Expect("ambiguous-recipients", "assigned", None,
                                    (("held", "provider"),))),
    "registration": ("none", to(REGISTER, sender=STRANGER, body="Name: Dr Robin Newcomer\n"
                                "Practice: Lakeside\nNPI: 1234567893\nPhone: 555-0142\n"
                                "License state: NJ\n", auth=False), DONE,
                     Expect("registration", None, None, NONE)),
    "unregistered": ("none", to(CASES, sender=STRANGER, auth=False), HOLD,
                     Expect("unregistered", None, None, NONE)),
    "not-approved": ("none", to(CASES, sender=PENDING), HOLD,
                     Expect("not-approved", None, None, NONE)),
    "unverified": ("none", to(CASES, auth=False), HOLD, Expect("unverified", None, None, NONE)),
    "help": ("none", to(HELP, body="How do I send a case?"), DONE,
             Expect("help", None, None, (("help", "provider"),))),
    "not-provider": ("none", to(CASES, sender="derm.one@derm.localhost"), DONE,
                     Expect("not-provider", None, None, (("rejected", "derm"),))),
    "new-case": ("none", to(CASES), DONE,
                 Expect("new-case", "assigned", "case.assigned",
                        (("ack", "provider"), ("derm_case", "derm")))),
    "no-route": ("none", to("elsewhere@derm.localhost"), HOLD,
                 Expect("no-route", None, None, (("held", "provider"),))),
    # the case-thread chain
    "forged-address": ("assigned", forged, HOLD,
                       Expect("forged-address", "assigned", None, (("held", "provider"),))),
    "unknown-case": ("assigned", unknown_case, HOLD,
                     Expect("unknown-case", "assigned", None, (("held", "provider"),))),
    "wrong-participant": ("assigned", reply("provider", "Hello", address="derm-address"), HOLD,
                          Expect("wrong-participant", "assigned", None,
                                 (("held", "provider"),))),
    "signals-disagree": ("assigned", reply("provider", "Hello",
                                           subject="Re: Case DERM-2026-999999"), HOLD,
                         Expect("signals-disagree", "assigned", None, (("held", "provider"),))),
    "completion": ("incomplete", reply("provider", "Here is the last photo",
                                       files=photos(3)[2:]), DONE,
                   Expect("completion", "assigned", "case.submitted",
                          (("ack", "provider"), ("derm_case", "derm")))),
    "not-assignee": ("assigned", reply("other-derm", "Diagnosis: eczema"), HOLD,
                     Expect("not-assignee", "assigned", None, (("held", "derm"),))),
    "not-participant": ("assigned", reply("other-provider", "Hello"), HOLD,
                        Expect("not-participant", "assigned", None,
                               (("held", "dr.other@clinic.test"),))),
    # the provider's rows
    "provider/empty-reply": ("assigned", reply("provider", QUOTED_ONLY), DONE,
                             Expect("empty-reply", "assigned", None,
                                    (("not_added", "provider"),))),
    "provider/urgency": ("assigned", reply("provider", "Urgency: urgent"), DONE,
                         Expect("urgency", "assigned", "case.urgency",
                                (("urgency_changed", "provider"),
                                 ("urgent_page", "derm")))),
    "provider-info": ("needs_info", reply("provider", "Three months, getting worse."), DONE,
                      Expect("provider-info", "assigned", "case.assigned",
                             (("info_forward", "derm"),))),
    "follow-up-case": ("reviewed", reply("provider", FOLLOW_UP, files=photos(3)), DONE,
                       Expect("follow-up-case", "reviewed", "case.submitted",
                              (("ack", "provider"), ("derm_case", "derm")))),
    # the incomplete case is left waiting: "New case: yes" is another episode, not its details
    "incomplete/follow-up-case": ("incomplete", reply("provider", FOLLOW_UP, files=photos(3)),
                                  DONE, Expect("follow-up-case", "incomplete", "case.submitted",
                                               (("ack", "provider"), ("derm_case", "derm")))),
    "provider/close": ("reviewed", reply("provider", "Close"), DONE,
                       Expect("close", "closed", "case.closed", (("case_closed", "derm"),))),
    "provider/comment": ("assigned", reply("provider", "The itch is worse at night."), DONE,
                         Expect("comment", "assigned", "note.comment",
                                (("comment_forward", "derm"),))),
    # the dermatologist-answer chain
    "derm/empty-reply": ("assigned", reply("derm", QUOTED_ONLY), DONE,
                         Expect("empty-reply", "assigned", None, (("not_added", "derm"),))),
    "derm/urgency": ("assigned", reply("derm", "Urgency: urgent"), DONE,
                     Expect("urgency", "assigned", "case.urgency",
                            (("urgency_changed", "provider"), ("urgent_page", "derm")))),
    "answer-incomplete": ("assigned", reply("derm", "Plan: emollients twice daily"), DONE,
                          Expect("answer-incomplete", "assigned", None,
                                 (("answer_incomplete", "derm"),))),
    "refused": ("assigned", reply("derm", "Close"), DONE,
                Expect("refused", "assigned", None, (("not_added", "derm"),))),
    "consult": ("assigned", reply("derm", ANSWER_TEXT), DONE,
                Expect("consult", "reviewed", "case.reviewed", NONE)),
    "more-info": ("assigned", reply("derm", "More info: How long has it been there?"), DONE,
                  Expect("more-info", "needs_info", "case.needs_info",
                         (("more_info", "provider"),))),
    "decline": ("assigned", reply("derm", "Decline: not my field"), DONE,
                Expect("decline", "assigned", "case.submitted", (("derm_case", "derm"),))),
    "derm/close": ("reviewed", reply("derm", "Close"), DONE,
                   Expect("close", "closed", "case.closed", (("case_closed", "provider"),))),
    "derm/comment": ("assigned", reply("derm", "Is it worse in the winter?"), DONE,
                     Expect("comment", "assigned", "note.comment",
                            (("comment_forward", "provider"),))),
}


def test_the_table_names_every_row_of_every_chain() -> None:
    """A row added to a chain without a test here fails this test."""
    tested = {key.split("/")[-1] for key in TABLE}
    jumps = {"attached", "case-reply", "provider", "dermatologist", "another-patient",
             "unreadable", "patient-details", "keep-alive",
             "smime", "smime-certificate"}  # tested end to end (test_smime), or steps
    rows = set(names(CHAIN)) | set(names(CASE_THREAD)) | set(names(PROVIDER_REPLY)) | set(
        names(ANSWER))
    assert rows - jumps == tested


@pytest.mark.parametrize("key", list(TABLE))
def test_each_outcome_row(app: App, provider: str, dermatologists: tuple[str, str],
                          key: str) -> None:
    state, send, status, expect = TABLE[key]
    world = World(app, provider, dermatologists)
    world.open(state)
    with app.sessions() as session:
        last_mail = session.execute(select(func.max(OutboundMessage.id))).scalar_one() or 0
        last_event = session.execute(select(func.max(AuditEvent.id))).scalar_one() or 0
    _row_id, outcome = send(world)
    name = outcome.reason_code or outcome.route  # type: ignore[attr-defined]
    assert (outcome.status, name) == (status, expect.name), outcome  # type: ignore[attr-defined]
    with app.sessions() as session:
        emails = session.execute(select(OutboundMessage.kind, OutboundMessage.to_addr).where(
            OutboundMessage.id > last_mail)).all()
        events = session.execute(select(AuditEvent.action).where(
            AuditEvent.id > last_event)).scalars().all()
        case = session.execute(select(Case).where(Case.number == world.number)
                               ).scalar_one_or_none() if world.number else None
        if key == "new-case":
            case = session.execute(select(Case)).scalar_one()
    assert (case.state if case else None) == expect.state
    if expect.audit:
        assert expect.audit in events, events
    assert tuple(sorted((kind, world.who(addr)) for kind, addr in emails)) == expect.emails
