"""What a consult report shows: plain values, built by workflow/, rendered by reports/."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class ReportPhoto:
    position: int
    view: str  # e.g. "distribution", "close-up (anterior/posterior)"
    caption: str
    jpeg: bytes  # EXIF-free JPEG, longest side <= 1600 px
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReportComment:
    """One message of the case's thread: a question, its answer, a comment, ..."""

    at: datetime
    author: str  # name
    role: str  # "provider" | "dermatologist" | "admin"
    body: str
    kind: str = "comment"  # "question" | "answer_to_question" | "comment" | "completion" | "close"


@dataclass(frozen=True)
class ReportAddendum:
    at: datetime
    author: str
    text: str  # the amended answer, as "Label: value" lines already formatted
    title: str  # "Addendum 1", ...: parse.fields.consult_title, as on the web page


@dataclass(frozen=True)
class ReportEarlier:
    """One of the patient's earlier cases (workflow/patient_history.py)."""

    case_number: str
    received_at: datetime
    answered_at: datetime | None  # None: not answered yet
    diagnosis: str
    plan: str


@dataclass(frozen=True)
class ConsultReport:
    case_number: str
    issued_at: datetime  # aware
    timezone: str  # for display, e.g. "America/New_York"
    # patient
    patient_name: str
    date_of_birth: str
    sex: str
    mrn: str
    # people
    provider_name: str
    provider_practice: str
    provider_email: str
    dermatologist_name: str
    dermatologist_credentials: str  # e.g. "MD, FAAD; board-certified dermatologist"
    # times and SLA
    received_at: datetime
    answered_at: datetime
    sla_met: bool | None  # None: not measured
    sla_text: str  # e.g. "Reviewed within 1 h 12 min of business time (target 2 h)"
    # the case
    urgency: str  # "routine" | "urgent": shown in the header, not in the history
    history: tuple[tuple[str, str], ...]  # (label, value) in form order, reason for referral first
    photos: tuple[ReportPhoto, ...]
    # the answer (shown in the order of parse.answer.NAMES, the order it is written in)
    diagnosis: str
    differential: str
    plan: str
    tests: str  # biopsy and other tests
    icd10: str
    next_step: str  # "Manage in primary care" | "Routine in-person visit" | ...
    follow_up: str
    image_quality: str  # "adequate" | "adequate with suggestions" | "not diagnostic" | ""
    addenda: tuple[ReportAddendum, ...] = ()
    earlier: tuple[ReportEarlier, ...] = ()  # the patient's earlier cases, newest first
    # the whole thread in time order: before the answer, and after it when re-issued
    comments: tuple[ReportComment, ...] = ()
    limitation: str = (
        "This consultation is based on the history and photographs provided, without an "
        "in-person examination. It is advice to the referring clinician, who remains "
        "responsible for the patient's care. If the condition changes or does not respond "
        "as expected, re-refer or arrange an in-person visit."
    )
    extra: dict[str, str] = field(default_factory=dict)
