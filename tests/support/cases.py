"""A case as a provider sends it, and cases made through the real spool and worker (no server
thread): `deliver` is what the SMTP door and a worker pass do, in the test's own thread."""

from __future__ import annotations

import re

from sqlalchemy import select

from mailflow.app import App
from mailflow.db.models import Case
from mailflow.spool import Arrival, spool
from mailflow.workflow.worker import drain
from tests.support.images import skin_photo
from tests.support.mail import FULL_FORM, case_email

CASES = "cases@derm.localhost"
CASE_NUMBER = re.compile(r"DERM-\d{4}-\d{6}")


def three_photos() -> list[tuple[str, bytes]]:
    return [
        ("distribution.jpg", skin_photo(seed=1)),
        ("closeup_front.jpg", skin_photo(seed=2)),
        ("oblique_side.jpg", skin_photo(seed=3)),
    ]


def deliver(app: App, raw: bytes, sender: str, rcpt: str, auth: bool = True) -> None:
    """Spool one message as the SMTP door does, then let a worker process everything waiting."""
    spool(app, Arrival("smtp", raw, mail_from=sender, rcpt_to=(rcpt,),
                       auth_user=sender if auth else ""))
    drain(app)


def send_case(app: App, provider: str, form: str = FULL_FORM) -> str:
    """A complete case from `provider`, processed; its number."""
    deliver(app, case_email(provider, CASES, form, three_photos()).as_bytes(), provider, CASES)
    with app.sessions() as session:
        case = session.execute(select(Case).order_by(Case.id.desc())).scalars().first()
        assert case is not None
        return case.number
