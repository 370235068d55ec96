"""The reports part: render each consult's PDF report, store it and email it to the provider.

A runner (mailflow/runner.py) over the consults whose report is not issued yet (`pdf_sha` is
empty: the promise committed with the consult). Each report is claimed first (by this process
instance), so two workers never render the same one; a claim older than `[intake]
lease_seconds` is taken over, and a stopped instance's claims are given back at once
(mailflow/instances.py). Rendering (wkhtmltopdf, up to its timeout) happens with no write
transaction open, so it never holds the lock that the SMTP door needs to accept mail.

An attempt is counted when it fails, not when it is claimed: rendering runs in a jailed
subprocess with a timeout and cannot take this process down, so a report whose process
stopped is simply claimed again. There is no column for a retry time, so a failed report is
tried again at the next turn; after `[intake] max_attempts` failures it is given up (audited
as `report.failed`) and an admin can look at `report_error`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, or_
from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.app import App
from mailflow.db.models import Account, Case, Consult
from mailflow.db.session import transaction
from mailflow.reports.pdf import render_consult_pdf
from mailflow.runner import Claim, Failure, Runner
from mailflow.workflow.consult_report import NEXT_STEP, IssuedReport, build
from mailflow.workflow.notify import send

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportClaim(Claim):
    pass


class ReportRunner(Runner[Consult, ReportClaim]):
    """Consults whose report is not issued yet: render, store, email."""

    name = "reports"
    model = Consult
    batch = 5  # a render takes seconds: look up between a few
    wake_topics = ("case",)  # a consult is saved with its case's move to reviewed/addendum

    @property
    def max_attempts(self) -> int:
        return self.app.config.intake.max_attempts

    @property
    def backoff(self) -> tuple[int, ...]:
        return ()  # no retry-time column: tried again at the next turn

    @property
    def poll_seconds(self) -> float:
        return self.app.config.intake.poll_seconds

    def due(self, now: datetime) -> ColumnElement[bool]:
        lease = timedelta(seconds=self.app.config.intake.lease_seconds)
        return (
            (Consult.pdf_sha == "")
            & (Consult.report_attempts < self.max_attempts)
            & or_(Consult.report_claimed_at.is_(None), Consult.report_claimed_at < now - lease)
        )

    def take(self, row: Consult, now: datetime) -> ReportClaim:
        row.report_claimed_at = now
        row.report_claimed_by = self.instance
        return ReportClaim(row.id, now, row.report_attempts + 1, self.instance)

    def holds(self, row: Consult, claim: ReportClaim) -> bool:
        return (row.report_claimed_at == claim.claimed_at
                and row.report_claimed_by == claim.instance)

    def dispose(self, claim: ReportClaim) -> None:
        with self.app.sessions() as session:  # a read: builds the report's values
            consult = session.get(Consult, claim.id)
            assert consult is not None
            case = session.get(Case, consult.case_id)
            assert case is not None
            report = build(self.app, session, case)
            password = case.provider.pdf_password or None
        data = render_consult_pdf(report, self.app.config.templates_dir, password=password)
        with transaction(self.app.sessions) as session:
            row = self.held(session, claim)
            if row is None or row.pdf_sha:
                return  # our claim lapsed or was given back: another worker issues it
            _issue(self.app, session, row, IssuedReport(data, bool(password)))

    def failure(self, claim: ReportClaim, exc: Exception) -> Failure:
        log.error("consult %d: the report could not be rendered (%s)", claim.id,
                  type(exc).__name__)
        return Failure(type(exc).__name__)  # its text may quote the report

    def retry(self, session: Session, row: Consult, claim: ReportClaim, failure: Failure,
              delay: timedelta) -> None:
        row.report_attempts = claim.attempts
        row.report_error = failure.error
        row.report_claimed_at = row.report_claimed_by = None

    def give_up(self, session: Session, row: Consult, claim: ReportClaim,
                failure: Failure) -> None:
        self.retry(session, row, claim, failure, timedelta(0))  # attempts now at the most
        case = session.get(Case, row.case_id)
        assert case is not None
        audit.case_event(session, case, "report.failed",
                         detail={"version": row.version, "attempts": claim.attempts,
                             "error": failure.error})
        log.error("consult %d: the report was given up after %d attempts", row.id,
                  claim.attempts)


def _issue(app: App, session: Session, consult: Consult, issued: IssuedReport) -> None:
    """Store the report, audit it and email it to the provider, in the claim's transaction."""
    consult.report_claimed_at = consult.report_claimed_by = None
    case = session.get(Case, consult.case_id)
    derm = session.get(Account, consult.dermatologist_id)
    assert case is not None and derm is not None
    consult.pdf_sha = app.blobs.put(issued.data, session)
    consult.report_error = ""
    audit.case_event(session, case, "report.issued",
                     detail={"version": consult.version, "protected": issued.protected})
    send(app, session, case, case.provider, "consult", "consult_ready", {
        "derm": derm,
        "diagnosis": consult.answer.get("diagnosis", ""),
        "next_step": NEXT_STEP.get(consult.in_person, consult.in_person),
        "sla_met": consult.sla_met,
        "addendum": consult.version > 1,
        "pdf_password_hint": issued.protected,
    }, [issued.attachment(case)], cause=consult.inbound_message_id)
    log.info("consult report for %s issued (version %d)", case.number, consult.version)


def deliver_pending_reports(app: App, limit: int = ReportRunner.batch,
                            instance: str | None = None) -> int:
    """Render, store and email the reports due now; returns how many were claimed."""
    return ReportRunner(app, instance).drain(limit)
