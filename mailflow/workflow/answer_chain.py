"""The dermatologist-answer chain: what the assigned dermatologist's reply on a case does.

The case-thread chain jumps here once it knows the sender is the case's dermatologist. The
reply is read once (parse.answer) and the rows below decide, top to bottom.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select

from mailflow import audit
from mailflow.db.models import Account, Case, CaseState, Consult
from mailflow.parse.answer import Answer, parse_answer
from mailflow.workflow import cases, transitions
from mailflow.workflow.chains import Row, otherwise, run
from mailflow.workflow.context import Inbound, Outcome
from mailflow.workflow.notify import send
from mailflow.workflow.replies import (
    Thread,
    apply_urgency,
    asks_urgency,
    nothing_new,
    photos_for_forward,
    tell_sender,
)

S = CaseState
# The commands a dermatologist writes, and the states each is possible in.
COMMAND_STATES: dict[str, tuple[str, ...]] = {
    "more_info": (S.ASSIGNED,),
    "decline": (S.ASSIGNED, S.NEEDS_INFO),
    "close": (S.REVIEWED, S.FOLLOW_UP),
}
FIRST_ANSWER_STATES = (S.ASSIGNED, S.NEEDS_INFO)  # later answers are addenda, in any state


@dataclass(frozen=True)
class Answering:
    m: Inbound
    case: Case
    derm: Account
    answer: Answer


def answer(t: Thread) -> Outcome:
    """The jump from the case-thread chain."""
    return run(ANSWER, Answering(t.m, t.case, t.sender, parse_answer(t.body)))


# --- predicates ----------------------------------------------------------------------------


def _empty(a: Answering) -> str | None:
    return nothing_new(a.m)


def _any(a: Answering) -> str:
    return "a reply from the dermatologist"


def _urgency(a: Answering) -> str | None:
    # a consult's own Urgency line changes nothing: the review it stops is done
    return None if a.answer.kind == "consult" else asks_urgency(a.m, a.case)


def _incomplete(a: Answering) -> str | None:
    if a.answer.kind == "consult" and a.answer.missing:
        return f"no {' or '.join(a.answer.missing)}"
    return None


def _consults_so_far(a: Answering) -> int:
    return a.m.session.execute(
        select(func.max(Consult.version)).where(Consult.case_id == a.case.id)
    ).scalar_one() or 0


def _not_now(a: Answering) -> str | None:
    state, kind = a.case.state, a.answer.kind
    if kind == "consult" and state not in FIRST_ANSWER_STATES and _consults_so_far(a) == 0:
        return f"the case is {state} and cannot be answered now."
    if kind in COMMAND_STATES and state not in COMMAND_STATES[kind]:
        return (f"'{kind.replace('_', ' ')}' is not possible while "
                f"the case is {state.replace('_', ' ')}.")
    return None


def _kind(kind: str) -> Callable[[Answering], str | None]:
    def predicate(a: Answering) -> str | None:
        return f"an answer of kind {kind}" if a.answer.kind == kind else None

    return predicate


# --- actions -------------------------------------------------------------------------------


def _tell_empty(a: Answering, _why: str) -> Outcome:
    return tell_sender(a.m, a.case, "it had no new text (only the quoted email).", "empty-reply")


def _keep_alive(a: Answering, _why: str) -> None:
    cases.touch(a.case)  # the idle-close clock starts again


def _set_urgency(a: Answering, _why: str) -> Outcome | None:
    return apply_urgency(a.m, a.case, a.derm)


def _refuse_incomplete(a: Answering, why: str) -> Outcome:
    send(a.m.app, a.m.session, a.case, a.derm, "answer_incomplete", "answer_incomplete",
         {"missing": list(a.answer.missing), "problems": list(a.answer.problems)},
         cause=a.m.row.id)
    return Outcome.done("answer-incomplete", f"answer to {a.case.number} refused: {why}",
                        a.case.id)


def _refuse(a: Answering, why: str) -> Outcome:
    return tell_sender(a.m, a.case, why, "refused")


def _record_consult(a: Answering, _why: str) -> Outcome:
    """The consult, or an addendum to it. The PDF is rendered and sent by the report step,
    outside this transaction: the empty pdf_sha committed with it is the promise it will be."""
    session, case, derm = a.m.session, a.case, a.derm
    version = _consults_so_far(a) + 1
    record = Consult(case_id=case.id, dermatologist_id=derm.id, inbound_message_id=a.m.row.id,
                     version=version, in_person=a.answer.in_person,
                     answer=_answer_fields(a.answer), sla_met=None)
    session.add(record)
    session.flush()
    if version == 1:
        cases.reviewed(session, case, derm, version)
        record.sla_met = case.sla_met
    else:
        audit.case_event(session, case, "case.addendum", actor=derm.email,
                         detail={"version": version})
    what = "consult" if version == 1 else f"addendum {version - 1}"
    return Outcome.done("consult", f"{what} for {case.number} recorded; report to follow",
                        case.id)


def _ask(a: Answering, _why: str) -> Outcome:
    transitions.ask_provider(a.m.app, a.m.session, a.case, a.derm, a.answer.question,
                             a.m.row.id)
    return Outcome.done("more-info", f"{a.case.number}: question sent to the provider",
                        a.case.id)


def _decline(a: Answering, _why: str) -> Outcome:
    where = transitions.decline_case(a.m.app, a.m.session, a.case, a.derm, a.answer.reason,
                                     a.m.row.id)
    return Outcome.done("decline", f"{a.case.number} declined, {where}", a.case.id)


def _close(a: Answering, _why: str) -> Outcome:
    transitions.close_case(a.m.app, a.m.session, a.case, by=a.derm, why="by the dermatologist",
                           note=a.answer.text, cause=a.m.row.id)
    return Outcome.done("close", f"{a.case.number} closed by the dermatologist", a.case.id)


def _comment(a: Answering, _why: str) -> Outcome:
    photos, files = photos_for_forward(a.m, a.case)
    transitions.comment(a.m.app, a.m.session, a.case, a.derm,
                        a.answer.text or a.m.analysis.body.strip(), photos, files,
                        inbound_id=a.m.row.id)
    return Outcome.done("comment", f"comment from the dermatologist on {a.case.number}",
                        a.case.id)


def _answer_fields(answer: Answer) -> dict[str, str]:
    keys = ("diagnosis", "differential", "plan", "follow_up", "in_person", "biopsy", "icd10",
            "image_quality")
    fields = {k: getattr(answer, k) for k in keys}
    if answer.icd10_text:  # a code that is no code stays as written (the FHIR export's text)
        fields["icd10_text"] = answer.icd10_text
    return fields


ANSWER: tuple[Row[Answering], ...] = (
    Row("empty-reply", _empty, _tell_empty,
        "a reply with only the quoted email adds nothing: the sender is told"),
    Row("keep-alive", _any, _keep_alive,
        "any real reply restarts the idle-close clock, then the next row looks"),
    Row("urgency", _urgency, _set_urgency,
        "an Urgency line is applied; a reply that said only that is done"),
    Row("answer-incomplete", _incomplete, _refuse_incomplete,
        "a consult missing a required part is refused, the parts named"),
    Row("refused", _not_now, _refuse,
        "a first consult, question, decline or close the case's state does not allow"),
    Row("consult", _kind("consult"), _record_consult,
        "the consult (or an addendum): the report follows"),
    Row("more-info", _kind("more_info"), _ask, "a question pauses the review"),
    Row("decline", _kind("decline"), _decline,
        "the case goes to a colleague, the pool, or the on-call lead"),
    Row("close", _kind("close"), _close, "the dermatologist closes a reviewed case"),
    Row("comment", otherwise("a comment"), _comment,
        "anything else is a comment, forwarded to the provider"),
)
