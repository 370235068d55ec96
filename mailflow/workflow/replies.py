"""What the case-thread and dermatologist-answer chains share: the reply they look at, and the
small steps both take (telling the sender why nothing happened, the urgency a reply asks for,
photos passed on to the other side)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailflow.db.models import Account, Case
from mailflow.outbound.outbox import FileAttachment
from mailflow.trust.replyaddr import ReplyAddress
from mailflow.workflow import urgency
from mailflow.workflow.context import Inbound, Outcome
from mailflow.workflow.intake_cases import store_photos
from mailflow.workflow.notify import photo_attachments, send


@dataclass(frozen=True)
class Thread:
    """A message on a case's thread: by its reply address, or attached by an admin."""

    m: Inbound
    found: Case | None  # locked for update; None when the address names no case we have
    bound: ReplyAddress | None = None  # the reply address, once its signature verified
    problem: str = ""  # why the reply address could not be read

    @property
    def case(self) -> Case:
        assert self.found is not None, "a row that needs the case runs after unknown-case"
        return self.found

    @property
    def sender(self) -> Account:
        sender = self.m.sender
        assert sender is not None, "the top chain holds mail from people with no account"
        return sender

    @property
    def body(self) -> str:
        return self.m.analysis.body


def nothing_new(m: Inbound) -> str | None:
    if not m.analysis.body.strip() and not m.analysis.photos:
        return "only the quoted email, nothing new"
    return None


def tell_sender(m: Inbound, case: Case, reason: str, route: str) -> Outcome:
    """Nothing happened to the case: the sender is told why, kindly."""
    assert m.sender is not None
    send(m.app, m.session, case, m.sender, "not_added", "not_your_case", {"reason": reason},
         cause=m.row.id)
    return Outcome.done(route, f"sender told: {reason}", case.id)


def asks_urgency(m: Inbound, case: Case) -> str | None:
    wanted = urgency.asked_in(m.analysis.body)
    if wanted and case.state in urgency.CHANGEABLE:
        return f"the reply asks for {wanted}"
    return None


def apply_urgency(m: Inbound, case: Case, author: Account) -> Outcome | None:
    """Apply the reply's Urgency line (urgency.set_urgency tells whom it must). The message is
    done when that changed the case and was all it said; else the next row reads the rest."""
    wanted = urgency.asked_in(m.analysis.body)
    result = urgency.set_urgency(m.app, m.session, case, wanted, author, cause=m.row.id)
    if result.changed and urgency.only_urgency(m.analysis.body):
        return Outcome.done("urgency", f"{case.number}: urgency now {case.urgency}", case.id)
    return None


def photos_for_forward(m: Inbound, case: Case) -> tuple[list[dict[str, Any]], list[FileAttachment]]:
    """The reply's photos, kept on the case and attached (review copies) to the forward."""
    if not m.analysis.photos:
        return [], []
    first = max((img.position for img in case.images), default=0) + 1
    stored = store_photos(m, case, m.analysis.photos, None, first_position=first)
    listed = [{"number": i.position, "view": i.view} for i in stored]
    return listed, photo_attachments(m.app, stored)
