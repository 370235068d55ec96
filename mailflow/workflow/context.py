"""What a routing step sees and what it decides."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from mailflow.app import App
from mailflow.db.models import Account, InboundMessage, MessageStatus
from mailflow.parse.analyze import Analysis
from mailflow.trust.sender import Verdict


@dataclass
class Inbound:
    app: App
    session: Session
    row: InboundMessage
    analysis: Analysis
    sender: Account | None = None
    verdict: Verdict | None = None

    @property
    def subject_ref(self) -> str:
        return self.analysis.message.message_id if self.analysis.message else ""


@dataclass(frozen=True)
class Outcome:
    status: str  # a MessageStatus
    route: str  # which link of the chain decided
    text: str  # people-readable, no PHI: shown in `messages list` and the dashboard
    reason_code: str = ""
    case_id: int | None = None

    @classmethod
    def hold(cls, route: str, code: str, reason: str) -> Outcome:
        return cls(MessageStatus.QUARANTINED, route, reason, code)

    @classmethod
    def done(cls, route: str, text: str, case_id: int | None = None) -> Outcome:
        return cls(MessageStatus.PROCESSED, route, text, "", case_id)
