"""The consult report as a clinical record: the answer's fields in the order the dermatologist
writes them, and the case's conversation in time order, around the answer and its addenda.

Plain values for the template; the field names are the answer parser's (parse.answer.NAMES),
so the report, the case page and the emails name a field alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from mailflow.parse.answer import NAMES
from mailflow.reports.model import ConsultReport, ReportAddendum, ReportComment

# What each kind of thread message is called in the record.
THREAD_KINDS = {
    "question": f"{NAMES['more_info']} question",
    "answer_to_question": "Answer to the question",
    "comment": "Comment",
    "completion": "Added to the case",
    "close": "Closed the case",
}


@dataclass(frozen=True)
class AnswerField:
    key: str  # the parser's key: "diagnosis", "in_person", ...
    label: str  # the parser's name for it
    value: str


@dataclass(frozen=True)
class ThreadEntry:
    at: datetime
    kind: str  # a THREAD_KINDS key, or "addendum" (a marker: the addendum itself is above)
    title: str
    author: str
    role: str
    body: str


def answer_fields(report: ConsultReport) -> list[AnswerField]:
    """The answer's filled fields in NAMES order; diagnosis, plan and the next step always
    (a report says 'Not stated' rather than leave them out)."""
    values = {
        "diagnosis": report.diagnosis,
        "differential": report.differential,
        "plan": report.plan,
        "follow_up": report.follow_up,
        "in_person": report.next_step,
        "biopsy": report.tests,
        "icd10": report.icd10,
        "image_quality": report.image_quality,
    }
    always = ("diagnosis", "plan", "in_person")
    return [AnswerField(key, NAMES[key], values[key].strip() or "Not stated")
            for key in NAMES if key in values and (values[key].strip() or key in always)]


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _entry(comment: ReportComment) -> ThreadEntry:
    title = THREAD_KINDS.get(comment.kind, comment.kind.replace("_", " ").capitalize())
    return ThreadEntry(comment.at, comment.kind, title, comment.author, comment.role,
                       comment.body)


def _marker(addendum: ReportAddendum) -> ThreadEntry:
    return ThreadEntry(addendum.at, "addendum", addendum.title, addendum.author,
                       "dermatologist", "")


def conversation(report: ConsultReport) -> tuple[list[ThreadEntry], list[ThreadEntry]]:
    """(before the answer, after it): the thread in time order; after the answer, each
    addendum takes its place in the thread as a marker pointing up to it."""
    answered = _aware(report.answered_at)
    before = [_entry(c) for c in report.comments if _aware(c.at) <= answered]
    after = [_entry(c) for c in report.comments if _aware(c.at) > answered]
    after += [_marker(a) for a in report.addenda]
    after.sort(key=lambda e: _aware(e.at))  # stable: a comment and a marker at once keep order
    return before, after
