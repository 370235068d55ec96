"""A case taken the whole way (sent, answered, reported, delivered, closed) through the real
spool, worker, report renderer and outbox, at the current (possibly moved) time."""

from __future__ import annotations

from sqlalchemy import select

from mailflow.app import App
from mailflow.db.models import Case, OutboundMessage
from mailflow.db.session import transaction
from mailflow.outbound.delivery import deliver_due
from mailflow.workflow import cases
from mailflow.workflow.report_runner import deliver_pending_reports
from tests.support.cases import CASES, deliver
from tests.support.images import gps_exif, skin_photo
from tests.support.mail import FULL_FORM, case_email, reply_to
from tests.support.sink import Delivered

SHORT_ANSWER = """Diagnosis: Nummular eczema
Plan: Triamcinolone 0.1% ointment twice daily for 2 weeks
In-person visit: not needed
"""


def photos(*seeds: int) -> list[tuple[str, bytes]]:
    """Three views, each a different photo per seed (the same seed: the same stored file)."""
    names = ("distribution.jpg", "closeup_front.jpg", "oblique_side.jpg")
    return [(name, skin_photo(seed=seed, exif=gps_exif()))
            for name, seed in zip(names, seeds, strict=True)]


def sent_to(app: App, case_id: int, who: str) -> Delivered:
    """The last email the case sent to `who`, as its relay received it."""
    with app.sessions() as session:
        row = session.execute(
            select(OutboundMessage).where(OutboundMessage.case_id == case_id,
                                          OutboundMessage.to_addr == who)
            .order_by(OutboundMessage.id.desc()).limit(1)).scalar_one()
        return Delivered(row.from_addr, (row.to_addr,), app.blobs.get(row.blob_sha))


def closed_case(app: App, provider: str, derm: str, seeds: tuple[int, ...],
                form: str = FULL_FORM) -> str:
    """A case sent, answered, reported, delivered and closed, all at the current (moved) time."""
    deliver(app, case_email(provider, CASES, form, photos(*seeds)).as_bytes(), provider, CASES)
    with app.sessions() as session:
        case = session.execute(select(Case).order_by(Case.id.desc()).limit(1)).scalar_one()
        case_id, number = case.id, case.number
    msg, address = reply_to(sent_to(app, case_id, derm), derm, SHORT_ANSWER)
    deliver(app, msg.as_bytes(), derm, address)
    assert deliver_pending_reports(app) == 1
    with transaction(app.sessions) as session:
        cases.close(session, session.get(Case, case_id), "system", "treatment finished")
    while deliver_due(app):
        pass
    return number
