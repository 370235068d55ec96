"""What a routing step sees and what it decides."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from mailflow.app import App
from mailflow.crypto.smime import Unwrapped
from mailflow.db.models import Account, InboundMessage, MessageStatus
from mailflow.parse.analyze import Analysis
from mailflow.trust.inbound_auth import Checked
from mailflow.trust.sender import Verdict


@dataclass(frozen=True)
class Trust:
    """What the trust step decided about who sent a message, before any rule runs."""

    sender: Account | None  # the approved-or-not account its From: names; None: no account
    verdict: Verdict  # whether the sender proved it sent it (SMTP AUTH, a trusted relay)
    released: bool  # an admin released it from quarantine: trusted as if verified (audited)


class TrustNotDecided(Exception):
    """A rule asked who sent the message before the trust step ran: a bug in the chain."""


@dataclass
class Inbound:
    app: App
    session: Session
    row: InboundMessage
    analysis: Analysis
    checked: Checked | None = None  # MX mode: mailflow's own DKIM/SPF/DMARC check (worker)
    smime: Unwrapped | None = None  # its S/MIME layers, opened before parsing (crypto/smime.py)
    trust: Trust | None = None  # set once, by router.trust_step, before the first rule

    @property
    def trusted(self) -> Trust:
        if self.trust is None:
            raise TrustNotDecided("the trust step has not run for this message")
        return self.trust

    @property
    def sender(self) -> Account | None:
        return self.trusted.sender

    @property
    def verdict(self) -> Verdict:
        return self.trusted.verdict

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
