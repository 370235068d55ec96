"""The case's transitions that people cause, each with the emails it owes.

`cases` changes the state and writes the audit event; a function here does that and queues,
in the same transaction, everything the change must tell. The email chains, the web and the
command line call these, so a case closed from any door tells the same people (a rolled-back
transaction takes its emails with it: the outbox is a table in the same database).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow.app import App
from mailflow.db.models import Account, Case, CaseState, Consult
from mailflow.outbound.outbox import FileAttachment
from mailflow.workflow import cases
from mailflow.workflow.assign import try_assign
from mailflow.workflow.notify import send
from mailflow.workflow.waiting import alarm_if_stuck

S = CaseState
BY_THE_TEAM = "by the consult service's team"  # an admin's close, in the emails' words


def last_reviewer(session: Session, case: Case) -> Account | None:
    derm_id = session.execute(
        select(Consult.dermatologist_id)
        .where(Consult.case_id == case.id)
        .order_by(Consult.version.desc())
        .limit(1)
    ).scalar_one_or_none()
    return session.get(Account, derm_id) if derm_id else None


def dermatologist_of(session: Session, case: Case) -> Account | None:
    """The dermatologist on the case: its assignee, or whoever answered it last."""
    return case.assignee or last_reviewer(session, case)


def close_case(
    app: App,
    session: Session,
    case: Case,
    *,
    by: Account | None,
    why: str,
    actor: str = "",
    note: str | None = None,
    cause: int | None = None,
) -> bool:
    """Close the case and tell everyone on it (provider, dermatologist) but whoever closed it.

    `why` finishes "Case … was closed …" in the email; `by` None is the system or the command
    line (`actor` names it in the audit log). False when it was closed already: nobody is told
    twice. A TransitionError (a state that cannot close) leaves everything as it was.
    """
    if case.state == S.CLOSED:
        return False
    who = actor or (by.email if by is not None else "system")
    if note is not None and by is not None:
        cases.add_note(session, case, author=by, kind="close", body=note,
                       inbound_message_id=cause)
    cases.close(session, case, who, why)
    told = {by.id} if by is not None else set()
    for person in (case.provider, dermatologist_of(session, case)):
        if person is not None and person.id not in told:
            told.add(person.id)
            send(app, session, case, person, "case_closed", "case_closed", {"why": why},
                 cause=cause)
    return True


def decline_case(
    app: App, session: Session, case: Case, derm: Account, reason: str, cause: int | None
) -> str:
    """The dermatologist gives the case back: a colleague gets it, or the pool, or (nobody
    able to take it) the on-call lead and admins are told. Returns where it went, in words."""
    cases.decline(session, case, derm, reason, cause)
    colleague = try_assign(app, session, case, actor=derm.email)
    if colleague is None and alarm_if_stuck(app, session, case) is not None:
        return "nobody else can take it: on-call lead and admins told"
    return "reassigned" if colleague else "back in the pool"


def ask_provider(
    app: App, session: Session, case: Case, derm: Account, question: str, cause: int | None
) -> None:
    """The review pauses on a question; the provider receives it."""
    cases.request_info(session, case, derm, question, cause)
    send(app, session, case, case.provider, "more_info", "more_info", {"question": question},
         cause=cause)


def answer_question(
    app: App,
    session: Session,
    case: Case,
    provider: Account,
    body: str,
    photos: list[dict[str, Any]],
    files: Sequence[FileAttachment],
    cause: int | None,
) -> None:
    """The provider's answer resumes the review; the dermatologist receives it."""
    cases.info_received(session, case, provider, body, cause)
    assert case.assignee is not None  # a case waiting for information has its dermatologist
    send(app, session, case, case.assignee, "info_forward", "info_forward",
         {"author": provider, "body": body, "photos": photos}, files, cause=cause)


def comment(
    app: App,
    session: Session,
    case: Case,
    author: Account,
    body: str,
    photos: list[dict[str, Any]] | None = None,
    files: Sequence[FileAttachment] | None = None,
    inbound_id: int | None = None,
) -> None:
    """A comment on the thread, by email or on the web: kept, and forwarded to the other side.
    A reviewed or closed case moves to follow-up: the talk goes on."""
    cases.add_note(session, case, author=author, kind="comment", body=body,
                   inbound_message_id=inbound_id)
    cases.touch(case)
    cases.follow_up(session, case, author.email)
    mine = author.id == case.provider_id
    other = dermatologist_of(session, case) if mine else case.provider
    if other is not None:
        send(app, session, case, other, "comment_forward", "comment_forward",
             {"author": author, "body": body, "photos": photos or []}, files or [],
             cause=inbound_id)
