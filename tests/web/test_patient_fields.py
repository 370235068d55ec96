"""Patient details written later on a complete case (issue #9 item 2): under their own labels
they correct the patient record; a loose "Patient: ..." line in a comment never renames."""

from __future__ import annotations

from sqlalchemy import select

from mailflow.app import App
from mailflow.db.models import AuditEvent, Case
from tests.support.cases import send_case
from tests.support.mail import FULL_FORM
from tests.support.web import csrf_of


def test_a_comment_corrects_the_patients_details_but_not_from_loose_lines(
    app: App, people, web  # type: ignore[no-untyped-def]
) -> None:
    number = send_case(app, people["provider"], FULL_FORM.replace("Chart/MRN: MRN-0001\n", ""))
    provider = web(people["provider"])
    page = provider.get(f"/cases/{number}").text
    provider.post(f"/cases/{number}/comment", data={
        "body": "Patient: much better this week\nDate of birth: 1961-03-05\nMRN: MRN-0099",
        "csrf_token": csrf_of(page)})
    with app.sessions() as session:
        case = session.execute(select(Case).where(Case.number == number)).scalar_one()
        assert case.patient is not None
        assert (case.patient.name, case.patient.date_of_birth, case.patient.mrn) == (
            "Jane Testpatient", "1961-03-05", "MRN-0099")
        assert case.form["date_of_birth"] == "1961-03-05"
        change = session.execute(select(AuditEvent).where(
            AuditEvent.action == "patient.updated")).scalar_one()
        assert change.detail == {"fields": ["date_of_birth", "mrn"], "moved": False}
    shown = web(people["admin"]).get(f"/cases/{number}").text
    assert "<dd>1961-03-05</dd>" in shown and "<dd>MRN-0099</dd>" in shown
