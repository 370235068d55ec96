"""[mail] phi_in_email = false: case emails carry the case number and a sign-in link only."""

from __future__ import annotations

import email
from email.policy import default as default_policy
from pathlib import Path

from sqlalchemy import select

from mailflow.app import App, initialise
from mailflow.db.models import OutboundMessage
from mailflow.db.session import transaction
from mailflow.spool import Arrival, spool
from mailflow.workflow import accounts
from mailflow.workflow.report_runner import deliver_pending_reports
from mailflow.workflow.worker import drain
from tests.conftest import DERMS, PASSWORD, make_config
from tests.support.cases import CASES, three_photos
from tests.support.mail import FULL_FORM, case_email
from tests.support.review import ANSWER

PROVIDER = "doc@clinic.test"
PHI = ("Jane Testpatient", "1961-03-04", "MRN-0001", "Nummular eczema", "anterior lower legs",
       "distribution.jpg")


def test_no_patient_data_leaves_by_email(tmp_path: Path, db_url: str) -> None:
    config = make_config(tmp_path, db_url, mail={"phi_in_email": False},
                         web={"public_url": "https://derm.example.org"})
    initialise(config)
    app = App.open(config)
    try:
        with transaction(app.sessions) as s:
            accounts.add(s, email=PROVIDER, name="Dr Doc", role="provider", password=PASSWORD,
                         approved=True)
            accounts.add(s, email=DERMS[0], name="Dr Derm One", role="dermatologist",
                         password=PASSWORD, approved=True)

        def deliver(raw: bytes, sender: str, rcpt: str) -> None:
            spool(app, Arrival("smtp", raw, mail_from=sender, rcpt_to=(rcpt,), auth_user=sender))
            drain(app)

        deliver(case_email(PROVIDER, CASES, FULL_FORM, three_photos()).as_bytes(), PROVIDER,
                CASES)
        with app.sessions() as session:
            first = session.execute(select(OutboundMessage).where(
                OutboundMessage.kind == "derm_case")).scalar_one()
        notification = email.message_from_bytes(app.blobs.get(first.blob_sha),
                                                policy=default_policy)
        address = notification["Reply-To"].addresses[0].addr_spec
        deliver(case_email(DERMS[0], address, ANSWER, headers={
            "In-Reply-To": notification["Message-ID"]}).as_bytes(), DERMS[0], address)
        assert deliver_pending_reports(app) == 1
        with app.sessions() as session:
            rows = session.execute(select(OutboundMessage)).scalars().all()
        assert {r.kind for r in rows} >= {"ack", "derm_case", "consult"}
        for row in rows:
            raw = app.blobs.get(row.blob_sha)
            msg = email.message_from_bytes(raw, policy=default_policy)
            text = raw.decode("utf-8", "replace")
            for words in PHI:
                assert words not in text, (row.kind, words)
            assert list(msg.iter_attachments()) == [], row.kind
            if row.case_id is not None:
                assert "https://derm.example.org/cases/DERM-" in msg.get_body(
                    ("plain",)).get_content(), row.kind
    finally:
        app.close()
