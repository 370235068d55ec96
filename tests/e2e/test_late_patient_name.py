"""Issue #9 item 2: a patient's name that arrives only in the completing reply reaches the
patient record, and the report (read back with pypdf), the case page and `cases show --json`
agree. Cheap: the mail goes through the spool and a worker pass, no running service."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import time_machine
from fastapi.testclient import TestClient
from pypdf import PdfReader

from mailflow.app import App
from mailflow.db.session import transaction
from mailflow.web.app import create_web_app
from mailflow.workflow import accounts
from tests.conftest import DERMS, PASSWORD
from tests.support.cli import cli_json
from tests.support.mail import FULL_FORM
from tests.support.provider_mail import (
    ET,
    PROVIDER,
    last,
    new_case,
    provider_app,
    reply,
    sent_to,
)
from tests.support.review import ANSWER, pdf_of
from tests.support.web import sign_in

ADMIN = "admin@derm.localhost"
LATE = "Jane Latecomer"


@pytest.fixture
def app(tmp_path: Path, db_url: str) -> Iterator[App]:
    with provider_app(tmp_path, db_url) as application:
        with transaction(application.sessions) as session:
            accounts.add(session, email=ADMIN, name="Ada Admin", role="admin",
                         password=PASSWORD, approved=True)
        yield application


def test_a_patient_name_given_only_in_a_later_reply_reaches_the_record(app: App) -> None:
    with time_machine.travel(datetime(2026, 11, 30, 10, 0, tzinfo=ET), tick=False):
        number = new_case(app, FULL_FORM.replace("Patient name: Jane Testpatient\n", ""))
        shown = cli_json(app.config, "cases", "show", number)
        assert shown["state"] == "incomplete" and not (shown["patient"] or {}).get("name")
        reply(app, last(app, PROVIDER, "ack_incomplete"), PROVIDER, f"Patient name: {LATE}")
        shown = cli_json(app.config, "cases", "show", number)
        assert shown["state"] != "incomplete"
        assert shown["patient"]["name"] == LATE
        assert shown["patient"]["date_of_birth"] == "1961-03-04"

        with TestClient(create_web_app(app)) as client:
            assert sign_in(client, ADMIN).status_code == 303
            page = client.get(f"/cases/{number}")
            assert page.status_code == 200 and LATE in page.text

        derm_case = [s for s in sent_to(app, DERMS[0]) if s.kind == "derm_case"][-1]
        reply(app, derm_case, DERMS[0], ANSWER)
    pages = PdfReader(io.BytesIO(pdf_of(last(app, PROVIDER, "consult")))).pages  # type: ignore[arg-type]
    texts = [" ".join(p.extract_text().split()) for p in pages]
    assert texts and all(LATE in t for t in texts), texts  # on every page's header
    assert "1961-03-04" in texts[0] and number in texts[0]
