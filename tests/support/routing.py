"""Routing one message straight through the chains, with no worker or server: the message is
spooled and analysed as the worker does, then `router.route` decides it in one transaction."""

from __future__ import annotations

from email.message import EmailMessage

from sqlalchemy import select

from mailflow.app import App
from mailflow.db.models import Account, Case, InboundMessage, utcnow
from mailflow.db.session import transaction
from mailflow.parse.types import ImageLimits, MimeLimits
from mailflow.spool import Arrival, spool
from mailflow.trust import replyaddr
from mailflow.workflow.context import Inbound, Outcome
from mailflow.workflow.pool import blob_access, open_stored
from mailflow.workflow.router import route


def route_now(app: App, msg: EmailMessage | bytes, sender: str, rcpt: str | tuple[str, ...],
              auth: bool = True) -> tuple[int, Outcome]:
    """Spool `msg` and route it; returns the inbound message's id and the chain's outcome.
    Its S/MIME layers are opened first, as the worker does, when `[smime]` is on."""
    rcpts = (rcpt,) if isinstance(rcpt, str) else rcpt
    raw = msg if isinstance(msg, bytes) else msg.as_bytes()
    row_id = spool(app, Arrival("smtp", raw, mail_from=sender, rcpt_to=rcpts,
                                auth_user=sender if auth else ""))
    access = blob_access(app)
    with transaction(app.sessions) as session:
        row = session.get(InboundMessage, row_id)
        assert row is not None
        opened = open_stored(access, row.blob_sha, row.mail_from, MimeLimits(), ImageLimits(),
                             app.smime, utcnow())
        outcome = route(Inbound(app=app, session=session, row=row, analysis=opened.analysis,
                                smime=opened.smime))
    return row_id, outcome


def reply_address(app: App, number: str, email: str) -> str:
    """The signed reply address `email` is given on case `number`."""
    mail = app.config.mail
    with app.sessions() as session:
        person = session.execute(select(Account).where(Account.email == email)).scalar_one()
        return replyaddr.make(app.keys.reply_key, mail.reply_local, mail.domain, number,
                              person.id)


def latest_case(app: App) -> Case:
    with app.sessions() as session:
        case = session.execute(select(Case).order_by(Case.id.desc())).scalars().first()
        assert case is not None
        session.expunge(case)
        return case
