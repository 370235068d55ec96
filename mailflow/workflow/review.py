"""Replies on a case's thread once it is complete: the dermatologist's answer, questions and
declines, and the conversation between provider and dermatologist until the case is closed."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.app import App
from mailflow.db.models import Account, Case, CaseState, Consult, Role, utcnow
from mailflow.parse.answer import Answer, parse_answer
from mailflow.workflow import cases, urgency
from mailflow.workflow.assign import try_assign
from mailflow.workflow.context import Inbound, Outcome
from mailflow.workflow.intake_cases import patient_fields_from_reply, store_photos
from mailflow.workflow.notify import photo_attachments, send
from mailflow.workflow.waiting import alarm_if_stuck

log = logging.getLogger(__name__)
S = CaseState

_CLOSE_LINE = re.compile(r"^\s*close(\s+(the\s+)?case)?\s*[.!]?\s*$", re.IGNORECASE | re.MULTILINE)


def handle_reply(m: Inbound, case: Case) -> Outcome:
    sender = m.sender
    assert sender is not None
    if sender.id == case.provider_id:
        return provider_reply(m, case)
    if sender.role == Role.DERMATOLOGIST:
        if case.assignee_id != sender.id:
            return Outcome.hold(
                "case-reply",
                "not-assignee",
                f"an answer to {case.number} from {sender.email}, who is not "
                "the dermatologist assigned to it",
            )
        return derm_reply(m, case, sender)
    return Outcome.hold(
        "case-reply",
        "not-participant",
        f"a message to {case.number} from {sender.email}, not a participant",
    )


def _photos_for_forward(m: Inbound, case: Case) -> tuple[list, list]:
    if not m.analysis.photos:
        return [], []
    first = max((img.position for img in case.images), default=0) + 1
    stored = store_photos(m, case, m.analysis.photos, None, first_position=first)
    listed = [{"number": i.position, "view": i.view} for i in stored]
    return listed, photo_attachments(m.app, stored)


def _nothing_new(m: Inbound) -> bool:
    return not m.analysis.body.strip() and not m.analysis.photos


def _tell_sender(m: Inbound, case: Case, reason: str, route: str) -> Outcome:
    assert m.sender is not None
    send(
        m.app,
        m.session,
        case,
        m.sender,
        "not_added",
        "not_your_case",
        {"reason": reason},
        cause=m.row.id,
    )
    return Outcome.done(route, f"sender told: {reason}", case.id)


def provider_reply(m: Inbound, case: Case) -> Outcome:
    provider = m.sender
    assert provider is not None
    session, body = m.session, m.analysis.body.strip()
    if _nothing_new(m):
        return _tell_sender(
            m, case, "it had no new text or photos (only the quoted email).", "empty-reply"
        )
    cases.touch(case)
    derm = case.assignee or _last_reviewer(m, case)
    patient_fields_from_reply(session, m.app.keys, case, provider, body)
    if _urgency_only(m, case, provider, body):
        return Outcome.done("urgency", f"{case.number}: urgency now {case.urgency}", case.id)
    if case.state == S.NEEDS_INFO:
        photos, files = _photos_for_forward(m, case)
        cases.info_received(session, case, provider, body, m.row.id)
        assert case.assignee is not None
        send(
            m.app,
            session,
            case,
            case.assignee,
            "info_forward",
            "info_forward",
            {"author": provider, "body": body, "photos": photos},
            files,
            cause=m.row.id,
        )
        return Outcome.done(
            "provider-info", f"{case.number}: question answered, review resumes", case.id
        )
    if _CLOSE_LINE.search(body) and case.state in (S.REVIEWED, S.FOLLOW_UP):
        cases.add_note(
            session, case, author=provider, kind="close", body=body, inbound_message_id=m.row.id
        )
        cases.close(session, case, provider.email, "by the referring provider")
        if derm is not None:
            send(
                m.app,
                session,
                case,
                derm,
                "case_closed",
                "case_closed",
                {"why": "by the referring provider"},
                cause=m.row.id,
            )
        return Outcome.done("close", f"{case.number} closed by the provider", case.id)
    photos, files = _photos_for_forward(m, case)
    comment(m.app, session, case, provider, body, photos, files, inbound_id=m.row.id)
    return Outcome.done("comment", f"comment from the provider on {case.number}", case.id)


def comment(app: App, session: Session, case: Case, author: Account, body: str,
            photos: list | None = None, files: list | None = None,  # type: ignore[type-arg]
            inbound_id: int | None = None) -> None:
    """A comment on the thread, by email or on the web: kept, and forwarded to the other side."""
    cases.add_note(session, case, author=author, kind="comment", body=body,
                   inbound_message_id=inbound_id)
    cases.touch(case)
    cases.follow_up(session, case, author.email)  # reviewed or closed: the talk goes on
    if author.id == case.provider_id:
        other = case.assignee or _last_reviewer_of(session, case)
    else:
        other = case.provider
    if other is not None:
        send(app, session, case, other, "comment_forward", "comment_forward",
             {"author": author, "body": body, "photos": photos or []}, files or [],
             cause=inbound_id)


def _urgency_only(m: Inbound, case: Case, author: Account, body: str) -> bool:
    """Apply an Urgency line; True when that changed the case and was all the message said
    (the page and the provider's notice tell everyone: nothing to pass on as a comment)."""
    wanted = urgency.asked_in(body)
    if not wanted or case.state not in urgency.CHANGEABLE:
        return False
    result = urgency.set_urgency(m.app, m.session, case, wanted, author, cause=m.row.id)
    return result.changed and urgency.only_urgency(body)


def _last_reviewer(m: Inbound, case: Case) -> Account | None:
    return _last_reviewer_of(m.session, case)


def derm_reply(m: Inbound, case: Case, derm: Account) -> Outcome:
    if _nothing_new(m):
        return _tell_sender(m, case, "it had no new text (only the quoted email).", "empty-reply")
    answer = parse_answer(m.analysis.body)
    cases.touch(case)
    # a consult's own Urgency line changes nothing: the review it stops is done
    if answer.kind != "consult" and _urgency_only(m, case, derm, m.analysis.body):
        return Outcome.done("urgency", f"{case.number}: urgency now {case.urgency}", case.id)
    if answer.kind == "consult":
        if answer.missing:
            send(
                m.app,
                m.session,
                case,
                derm,
                "answer_incomplete",
                "answer_incomplete",
                {"missing": list(answer.missing), "problems": list(answer.problems)},
                cause=m.row.id,
            )
            return Outcome.done(
                "answer-incomplete",
                f"answer to {case.number} refused: no {' or '.join(answer.missing)}",
                case.id,
            )
        return consult(m, case, derm, answer)
    if answer.kind == "more_info" and case.state == S.ASSIGNED:
        cases.request_info(m.session, case, derm, answer.question, m.row.id)
        send(
            m.app,
            m.session,
            case,
            case.provider,
            "more_info",
            "more_info",
            {"question": answer.question},
            cause=m.row.id,
        )
        return Outcome.done("more-info", f"{case.number}: question sent to the provider", case.id)
    if answer.kind == "decline" and case.state in (S.ASSIGNED, S.NEEDS_INFO):
        cases.decline(m.session, case, derm, answer.reason, m.row.id)
        colleague = try_assign(m.app, m.session, case, actor=derm.email)
        if colleague is None and alarm_if_stuck(m.app, m.session, case) is not None:
            where = "nobody else can take it: on-call lead and admins told"
        else:
            where = "reassigned" if colleague else "back in the pool"
        return Outcome.done("decline", f"{case.number} declined, {where}", case.id)
    if answer.kind == "close" and case.state in (S.REVIEWED, S.FOLLOW_UP):
        cases.add_note(
            m.session,
            case,
            author=derm,
            kind="close",
            body=answer.text,
            inbound_message_id=m.row.id,
        )
        cases.close(m.session, case, derm.email, "by the dermatologist")
        send(
            m.app,
            m.session,
            case,
            case.provider,
            "case_closed",
            "case_closed",
            {"why": "by the dermatologist"},
            cause=m.row.id,
        )
        return Outcome.done("close", f"{case.number} closed by the dermatologist", case.id)
    if answer.kind in ("more_info", "decline", "close"):
        return _tell_sender(
            m,
            case,
            f"'{answer.kind.replace('_', ' ')}' is not possible while "
            f"the case is {case.state.replace('_', ' ')}.",
            "refused",
        )
    photos, files = _photos_for_forward(m, case)
    cases.add_note(
        m.session,
        case,
        author=derm,
        kind="comment",
        body=answer.text or m.analysis.body,
        inbound_message_id=m.row.id,
    )
    cases.follow_up(m.session, case, derm.email)
    send(
        m.app,
        m.session,
        case,
        case.provider,
        "comment_forward",
        "comment_forward",
        {"author": derm, "body": answer.text or m.analysis.body.strip(), "photos": photos},
        files,
        cause=m.row.id,
    )
    return Outcome.done("comment", f"comment from the dermatologist on {case.number}", case.id)


def consult(m: Inbound, case: Case, derm: Account, answer: Answer) -> Outcome:
    session = m.session
    version = (
        session.execute(
            select(func.max(Consult.version)).where(Consult.case_id == case.id)
        ).scalar_one()
        or 0
    ) + 1
    if version == 1 and case.state not in (S.ASSIGNED, S.NEEDS_INFO):
        return _tell_sender(
            m, case, f"the case is {case.state} and cannot be answered now.", "refused"
        )
    record = Consult(
        case_id=case.id,
        dermatologist_id=derm.id,
        inbound_message_id=m.row.id,
        version=version,
        in_person=answer.in_person,
        answer=_answer_fields(answer),
        sla_met=None,
    )
    session.add(record)
    session.flush()
    if version == 1:
        cases.reviewed(session, case, derm, version)
        record.sla_met = case.sla_met
    else:
        audit.record(
            session,
            "case.addendum",
            actor=derm.email,
            case_id=case.id,
            entity="case",
            entity_id=case.number,
            detail={"version": version},
        )
    # The PDF is rendered and sent by the report step, outside this transaction: the empty
    # pdf_sha committed with the consult is the promise that it will be.
    what = "consult" if version == 1 else f"addendum {version - 1}"
    return Outcome.done("consult", f"{what} for {case.number} recorded; report to follow", case.id)


def _answer_fields(answer: Answer) -> dict[str, str]:
    keys = (
        "diagnosis",
        "differential",
        "plan",
        "follow_up",
        "in_person",
        "biopsy",
        "icd10",
        "image_quality",
    )
    return {k: getattr(answer, k) for k in keys}


def close_idle(app: App, session: Session, now: datetime | None = None) -> int:
    """Close reviewed cases nobody has written about for `workflow.idle_close_days`."""
    now = now or utcnow()
    cutoff = now - timedelta(days=app.config.workflow.idle_close_days)
    idle = (
        session.execute(
            select(Case)
            .where(
                Case.state.in_((S.REVIEWED, S.FOLLOW_UP)),
                func.coalesce(Case.last_activity_at, Case.reviewed_at) < cutoff,
            )
            .with_for_update(skip_locked=True)
        )
        .scalars()
        .all()
    )
    days = app.config.workflow.idle_close_days
    why = f"after {days:g} days without a message"
    closed = 0
    for case in idle:
        try:
            with session.begin_nested():  # one broken case must not hold up the others
                cases.close(session, case, "system", why)
                for person in filter(None, (case.provider, _last_reviewer_of(session, case))):
                    send(app, session, case, person, "case_closed", "case_closed", {"why": why})
                closed += 1
        except Exception as exc:
            log.error("case %s could not be closed (%s)", case.number, type(exc).__name__)
    return closed


def _last_reviewer_of(session: Session, case: Case) -> Account | None:
    derm_id = session.execute(
        select(Consult.dermatologist_id)
        .where(Consult.case_id == case.id)
        .order_by(Consult.version.desc())
        .limit(1)
    ).scalar_one_or_none()
    return session.get(Account, derm_id) if derm_id else None
