"""The case-thread chain: a message to a case's reply address (or one an admin attached to a
case), from the referring provider or the dermatologist. The top chain jumps here; this
chain jumps on to the provider's rows or to the dermatologist-answer chain."""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlalchemy import select

from mailflow.db.models import Case, CaseState, OutboundMessage, Role
from mailflow.db.session import ROW_LOCK
from mailflow.parse.follow_up import asks_new_case
from mailflow.trust import replyaddr
from mailflow.workflow import cases, transitions
from mailflow.workflow.answer_chain import answer
from mailflow.workflow.chains import Row, otherwise, run
from mailflow.workflow.context import Inbound, Outcome
from mailflow.workflow.follow_up import ROUTE as FOLLOW_UP
from mailflow.workflow.follow_up import open_follow_up
from mailflow.workflow.intake_cases import complete_case, patient_fields_from_reply
from mailflow.workflow.replies import (
    Thread,
    apply_urgency,
    asks_urgency,
    nothing_new,
    photos_for_forward,
    tell_sender,
)

S = CaseState
CASE_NUMBER = re.compile(r"\bDERM-\d{4}-\d{6}\b", re.IGNORECASE)
_CLOSE_LINE = re.compile(r"^\s*close(\s+(the\s+)?case)?\s*[.!]?\s*$", re.IGNORECASE | re.MULTILINE)
ROUTE = "case-reply"  # the route of the messages this chain holds


def case_reply(m: Inbound, address: str) -> Outcome:
    """The jump from the top chain: the reply address read, its case found and locked
    (another worker may be moving the same case: PostgreSQL reads do not wait)."""
    mail = m.app.config.mail
    try:
        bound = replyaddr.parse(m.app.keys.reply_key, address, mail.reply_local, mail.domain)
    except replyaddr.ReplyAddressError as exc:
        return run(CASE_THREAD, Thread(m, None, problem=str(exc)))
    case = m.session.execute(
        select(Case).where(Case.number == bound.case_number).with_for_update(**ROW_LOCK)
    ).scalar_one_or_none()
    return run(CASE_THREAD, Thread(m, case, bound))


def attached_reply(m: Inbound, _why: str) -> Outcome:
    """An admin attached this held message to a case: a reply on it, with no address to check
    (the sender must still be its provider or its dermatologist)."""
    if m.sender is None:
        return Outcome.hold("attached", "unregistered", "the sender has no account")
    case = m.session.execute(
        select(Case).where(Case.id == m.row.case_id).with_for_update(**ROW_LOCK)
    ).scalar_one()
    return run(ON_CASE, Thread(m, case))


# --- the case-thread chain's predicates and actions ------------------------------------------


def _forged(t: Thread) -> str | None:
    return f"{t.problem}; held as a possible forgery" if t.problem else None


def _unknown(t: Thread) -> str | None:
    if t.found is None:
        assert t.bound is not None
        return f"a reply to {t.bound.case_number}, which does not exist"
    return None


def _wrong_participant(t: Thread) -> str | None:
    assert t.bound is not None
    if t.bound.participant_id != t.sender.id:
        return (f"a reply to {t.case.number} from {t.sender.email}, but that reply address "
                "was issued to another participant")
    return None


def _signals_disagree(t: Thread) -> str | None:
    """The reply address, our Message-IDs it answers, and the subject must name one case."""
    message, case = t.m.analysis.message, t.case
    assert message is not None
    ids = [*message.in_reply_to, *message.references]
    if ids:
        referenced = t.m.session.execute(
            select(OutboundMessage.case_id).where(OutboundMessage.message_id.in_(ids))
        ).scalars().all()
        if {cid for cid in referenced if cid is not None and cid != case.id}:
            return f"a reply to {case.number} that answers an email about another case"
    numbers = {n.upper() for n in CASE_NUMBER.findall(message.subject)}
    if numbers and case.number not in numbers:
        return f"a reply to {case.number} whose subject names {', '.join(sorted(numbers))}"
    return None


def _completes(t: Thread) -> str | None:
    # "New case: yes" is another episode (maybe another lesion): its photos and lines must
    # not be merged into this case, so it goes on to the provider's rows (follow-up-case)
    if (t.case.state == S.INCOMPLETE and t.sender.id == t.case.provider_id
            and not asks_new_case(t.body)):
        return "the provider's reply to an incomplete case"
    return None


def _from_provider(t: Thread) -> str | None:
    return "from the referring provider" if t.sender.id == t.case.provider_id else None


def _from_other_derm(t: Thread) -> str | None:
    if t.sender.role == Role.DERMATOLOGIST and t.case.assignee_id != t.sender.id:
        return (f"an answer to {t.case.number} from {t.sender.email}, who is not "
                "the dermatologist assigned to it")
    return None


def _from_assignee(t: Thread) -> str | None:
    if t.sender.role == Role.DERMATOLOGIST and t.case.assignee_id == t.sender.id:
        return "from the assigned dermatologist"
    return None


def _not_participant(t: Thread) -> str:
    return f"a message to {t.case.number} from {t.sender.email}, not a participant"


def hold(code: str) -> Callable[[Thread, str], Outcome]:
    def action(t: Thread, why: str) -> Outcome:
        return Outcome.hold(ROUTE, code, why)

    return action


def _complete(t: Thread, _why: str) -> Outcome:
    return complete_case(t.m, t.case)


def _provider(t: Thread, _why: str) -> Outcome:
    return run(PROVIDER_REPLY, t)


def _dermatologist(t: Thread, _why: str) -> Outcome:
    return answer(t)


# --- the provider's rows ----------------------------------------------------------------------


def _empty(t: Thread) -> str | None:
    return nothing_new(t.m)


def _any(t: Thread) -> str:
    return "a reply from the provider"


def _urgency(t: Thread) -> str | None:
    return asks_urgency(t.m, t.case)


def _waited_on(t: Thread) -> str | None:
    return "the answer to the dermatologist's question" if t.case.state == S.NEEDS_INFO else None


def _asks_to_close(t: Thread) -> str | None:
    if _CLOSE_LINE.search(t.body.strip()) and t.case.state in (S.REVIEWED, S.FOLLOW_UP):
        return "a close line on a reviewed case"
    return None


def _tell_empty(t: Thread, _why: str) -> Outcome:
    return tell_sender(t.m, t.case, "it had no new text or photos (only the quoted email).",
                       "empty-reply")


def _asks_new_case(t: Thread) -> str | None:
    if asks_new_case(t.body):
        return f"a reply on {t.case.number} asking for a new case of the same patient"
    return None


def _patient_details(t: Thread, _why: str) -> None:
    cases.touch(t.case)  # the idle-close clock starts again
    patient_fields_from_reply(t.m.session, t.m.app.keys, t.case, t.sender, t.body.strip())


def _set_urgency(t: Thread, _why: str) -> Outcome | None:
    return apply_urgency(t.m, t.case, t.sender)


def _answer_question(t: Thread, _why: str) -> Outcome:
    photos, files = photos_for_forward(t.m, t.case)
    transitions.answer_question(t.m.app, t.m.session, t.case, t.sender, t.body.strip(),
                                photos, files, t.m.row.id)
    return Outcome.done("provider-info", f"{t.case.number}: question answered, review resumes",
                        t.case.id)


def _close(t: Thread, _why: str) -> Outcome:
    transitions.close_case(t.m.app, t.m.session, t.case, by=t.sender,
                           why="by the referring provider", note=t.body.strip(),
                           cause=t.m.row.id)
    return Outcome.done("close", f"{t.case.number} closed by the provider", t.case.id)


def _comment(t: Thread, _why: str) -> Outcome:
    photos, files = photos_for_forward(t.m, t.case)
    transitions.comment(t.m.app, t.m.session, t.case, t.sender, t.body.strip(), photos, files,
                        inbound_id=t.m.row.id)
    return Outcome.done("comment", f"comment from the provider on {t.case.number}", t.case.id)


ON_CASE: tuple[Row[Thread], ...] = (
    Row("completion", _completes, _complete,
        "the provider's reply to an incomplete case adds what was missing "
        "(not one saying \"New case: yes\")"),
    Row("provider", _from_provider, _provider, "jump: the provider's rows"),
    Row("not-assignee", _from_other_derm, hold("not-assignee"),
        "a dermatologist the case is not assigned to may not answer it"),
    Row("dermatologist", _from_assignee, _dermatologist, "jump: the dermatologist-answer chain"),
    Row("not-participant", _not_participant, hold("not-participant"),
        "anyone else is not on the case"),
)
CASE_THREAD: tuple[Row[Thread], ...] = (
    Row("forged-address", _forged, hold("forged-address"),
        "a reply address whose signature does not verify"),
    Row("unknown-case", _unknown, hold("unknown-case"),
        "a signed address naming a case we do not have"),
    Row("wrong-participant", _wrong_participant, hold("wrong-participant"),
        "the address was issued to someone else"),
    Row("signals-disagree", _signals_disagree, hold("signals-disagree"),
        "the address, the answered email and the subject name different cases"),
    *ON_CASE,
)
PROVIDER_REPLY: tuple[Row[Thread], ...] = (
    Row("empty-reply", _empty, _tell_empty,
        "a reply with only the quoted email adds nothing: the sender is told"),
    Row(FOLLOW_UP, _asks_new_case, open_follow_up,
        "\"New case: yes\": a new case of the same patient; the old case is left as it was"),
    Row("patient-details", _any, _patient_details,
        "the patient's details in a reply are kept; the idle clock restarts; next row"),
    Row("urgency", _urgency, _set_urgency,
        "an Urgency line is applied; a reply that said only that is done"),
    Row("provider-info", _waited_on, _answer_question,
        "the answer to the dermatologist's question resumes the review"),
    Row("close", _asks_to_close, _close, "the provider closes a reviewed case"),
    Row("comment", otherwise("a comment"), _comment,
        "anything else is a comment, forwarded to the dermatologist"),
)
