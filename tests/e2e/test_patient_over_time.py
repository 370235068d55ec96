"""Issue #14 item 1, the patient over time, through the real doors: cases over SMTP (the
service's door, worker, report runner and delivery to the relay sink), the web pages, the CLI.

One patient's story in one test (each step needs the one before): a first case answered; a
second case for the same patient (no MRN this time) linked to it, whose dermatologist email,
case page (the same views side by side, with dates) and PDF show the earlier consult; the
provider's portal lists the patient with both cases; a reply to the second report with new
photos and "New case: yes" opens a third case of the same patient, leaving the second as it
was; two misspelt cases made separate records until an admin merges them (CLI, web), audited.
"""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select

from mailflow.app import App
from mailflow.config import Config
from mailflow.db.models import AuditEvent, Case, CaseNote, Patient
from mailflow.db.session import transaction
from mailflow.web.app import create_web_app
from mailflow.workflow import accounts
from tests.conftest import DERMS, PASSWORD, RunningService
from tests.support.cases import CASE_NUMBER, CASES
from tests.support.cli import run_cli
from tests.support.images import skin_photo
from tests.support.mail import FULL_FORM, case_email, reply_to, wait_until
from tests.support.review import ANSWER, answer, pdf_of, pdf_text, send
from tests.support.sink import Delivered, RelaySink
from tests.support.web import csrf_of, sign_in

DERM, ADMIN, OTHER = DERMS[0], "admin@derm.localhost", "dr.other@clinic.test"
VIEWS = ("distribution.jpg", "closeup_front.jpg", "oblique_side.jpg")
SECOND_ANSWER = """Diagnosis: Stasis dermatitis
Plan: Compression stockings daily; clobetasol 0.05% ointment for 10 days
In-person visit: not needed
"""
WITHOUT_MRN = FULL_FORM.replace("Chart/MRN: MRN-0001\n", "").replace(
    "Duration: 3 months", "Duration: 5 months")
FOLLOW_UP = """New case: yes
Reason for referral: the plaques came back after the steroid stopped
Duration: 2 weeks
Patient consent to photos: yes
"""


def photos(first_seed: int) -> list[tuple[str, bytes]]:
    """The three views, at the smallest size that passes the quality checks (quicker)."""
    return [(name, skin_photo(width=800, height=600, seed=first_seed + i))
            for i, name in enumerate(VIEWS)]


def mail_about(sink: RelaySink, to: str, words: str) -> Delivered:
    """The newest message to `to` whose subject has `words` (waits for it)."""
    def found() -> Delivered | None:
        hits = [m for m in sink.to(to) if words in str(m.message["Subject"])]
        return hits[-1] if hits else None
    return wait_until(found, what=f"a message to {to} about {words!r}")


def number_of(ack: Delivered) -> str:
    found = CASE_NUMBER.search(str(ack.message["Subject"]))
    assert found, ack.message["Subject"]
    return found.group(0)


def new_case(service: RunningService, sink: RelaySink, sender: str, form: str,
             seed: int) -> tuple[str, Delivered]:
    before = len(sink.to(sender))
    send(service, sender, case_email(sender, CASES, form, photos(seed)))
    ack = sink.wait_for(sender, before + 1)[before]
    return number_of(ack), ack


def patient_of(app: App, number: str) -> int | None:
    with app.sessions() as session:
        return session.execute(select(Case.patient_id).where(Case.number == number)
                               ).scalar_one()


def events(app: App, action: str) -> list[AuditEvent]:
    with app.sessions() as session:
        return list(session.execute(select(AuditEvent).where(AuditEvent.action == action)
                                    .order_by(AuditEvent.id)).scalars())


def test_the_patient_over_time(app: App, config: Config, sink: RelaySink,
                               service: RunningService, provider: str) -> None:
    with transaction(app.sessions) as session:
        accounts.add(session, email=DERM, name="Dr Derm One", role="dermatologist",
                     password=PASSWORD, approved=True, credentials="MD, FAAD")
        accounts.add(session, email=ADMIN, name="Ada Admin", role="admin",
                     password=PASSWORD, approved=True)
        accounts.add(session, email=OTHER, name="Dr Other", role="provider",
                     password=PASSWORD, approved=True)

    # 1. The first case, answered.
    first, ack = new_case(service, sink, provider, FULL_FORM, seed=1)
    assert "same patient" not in ack.text
    answer(service, app, DERM, mail_about(sink, DERM, first), ANSWER)
    mail_about(sink, provider, f"{first}: consult report")

    # 2. The same patient again, sent without the MRN: one record, linked.
    second, ack = new_case(service, sink, provider, WITHOUT_MRN, seed=11)
    assert patient_of(app, second) == patient_of(app, first) is not None
    assert f"This is the same patient as your case {first}" in ack.text
    assert "Testpatient" not in ack.text.split("WHAT WE READ")[0]  # no PHI in the new words
    to_derm = mail_about(sink, DERM, second)
    text = to_derm.text
    assert "EARLIER CASES OF THIS PATIENT" in text and first in text
    assert "Diagnosis: Nummular eczema" in text and "Triamcinolone 0.1% ointment" in text
    names = [p.get_filename() or "" for p in to_derm.message.iter_attachments()]
    earlier = [n for n in names if n.startswith("earlier-")]
    assert len(earlier) == 3 and all(first in n for n in earlier), names
    answer(service, app, DERM, to_derm, SECOND_ANSWER)
    report = mail_about(sink, provider, f"{second}: consult report")
    words = pdf_text(pdf_of(report))
    assert "EARLIER CONSULTS FOR THIS PATIENT" in words  # the headings are in capitals
    assert first in words and "Nummular eczema" in words and "Stasis dermatitis" in words

    # 3. The web case page: the earlier consult, and the same views side by side with dates.
    with TestClient(create_web_app(app)) as derm_web:
        assert sign_in(derm_web, DERM).status_code == 303
        page = derm_web.get(f"/cases/{second}").text
        over_time = page.split('id="over-time"', 1)[1].split("</section>", 1)[0]
        assert "Earlier consults" in over_time and "Nummular eczema" in over_time
        rows = re.findall(r'<div class="compare".*?</div>', over_time, re.S)
        assert len(rows) == 3, over_time  # distribution, close-up, oblique
        for row in rows:
            shots = re.findall(r'<img src="/cases/(DERM-\d{4}-\d{6})/photos/\d+/thumb"', row)
            assert shots == [second, first], row  # this case first, the earlier beside it
            assert "This case" in row and first in row
        thumb = re.search(rf'src="(/cases/{first}/photos/\d+/thumb)"', over_time)
        assert thumb and derm_web.get(thumb.group(1)).status_code == 200
    beside = [e for e in events(app, "case.viewed") if e.detail.get("beside") == second]
    assert [e.entity_id for e in beside] == [first] and beside[0].actor == DERM

    # 4. The provider's portal: the patient, with both cases.
    with TestClient(create_web_app(app)) as doc_web:
        assert sign_in(doc_web, provider).status_code == 303
        home = doc_web.get("/").text
        patients = home.split('id="your-patients"', 1)[1].split("</section>", 1)[0]
        assert patients.count('class="patient"') == 1 and "Jane Testpatient" in patients
        assert first in patients and second in patients
        assert "Nummular eczema" in patients and "Stasis dermatitis" in patients
        assert "answered" in patients and "reviewed" not in patients
    assert events(app, "patients.listed")[-1].actor == provider

    # 5. A follow-up by replying to the second report: a third case of the same patient.
    with app.sessions() as session:
        before = session.execute(select(Case).where(Case.number == second)).scalar_one()
        state, updated = before.state, before.updated_at
    acks = len(sink.to(provider))
    msg, address = reply_to(report, provider, FOLLOW_UP, photos(21))
    send(service, provider, msg, address)
    ack = sink.wait_for(provider, acks + 1)[acks]
    third = number_of(ack)
    assert third not in (first, second) and "received" in str(ack.message["Subject"])
    assert f"This is the same patient as your case {second} (and 1 more)" in ack.text
    assert patient_of(app, third) == patient_of(app, first)
    with app.sessions() as session:
        after = session.execute(select(Case).where(Case.number == second)).scalar_one()
        notes = session.execute(select(CaseNote).where(CaseNote.case_id == after.id)).all()
        new = session.execute(select(Case).where(Case.number == third)).scalar_one()
        assert (after.state, after.updated_at, notes) == (state, updated, [])
        assert new.state != "incomplete"
        assert new.form["location"] == "anterior lower legs, both sides"  # carried over
    follow_up = mail_about(sink, DERM, third).text
    assert first in follow_up and second in follow_up and "Stasis dermatitis" in follow_up

    # 6. Misspelt names made records of their own; an admin merges them (CLI, then web).
    acks = len(sink.to(provider))
    for sender, form, seed in ((provider, FULL_FORM.replace("Testpatient", "Testpatiant"), 31),
                               (provider, FULL_FORM.replace("Jane", "Jayne"), 41),
                               (OTHER, FULL_FORM, 51)):  # sent together: processed meanwhile
        send(service, sender, case_email(sender, CASES, form, photos(seed)))
    named = {ack.text.split("Patient name: ")[1].splitlines()[0]: ack
             for ack in sink.wait_for(provider, acks + 2)[acks:]}
    assert set(named) == {"Jane Testpatiant", "Jayne Testpatient"}, named
    typo_cli = number_of(named["Jane Testpatiant"])
    typo_web = number_of(named["Jayne Testpatient"])
    theirs = number_of(sink.wait_for(OTHER)[0])
    kept = patient_of(app, first)
    assert not any("same patient" in ack.text for ack in named.values())
    assert len({kept, patient_of(app, typo_cli), patient_of(app, typo_web),
                patient_of(app, theirs)}) == 4
    gone = patient_of(app, typo_cli)

    said = run_cli(config, "patients", "merge", first, typo_cli).stdout
    assert f"merged P{gone} into P{kept}" in said and typo_cli in said
    assert patient_of(app, typo_cli) == kept
    again = run_cli(config, "patients", "merge", first, typo_cli).stdout
    assert "already on" in again  # idempotent: nothing changes, nothing more is audited
    assert f"patient record P{kept}" in run_cli(config, "cases", "show", typo_cli).stdout
    refused = run_cli(config, "patients", "merge", f"P{kept}", f"P{patient_of(app, theirs)}",
                      check=False)
    assert refused.returncode == 1 and "different providers" in refused.stderr
    assert patient_of(app, theirs) != kept

    with TestClient(create_web_app(app)) as admin_web:
        assert sign_in(admin_web, ADMIN).status_code == 303
        page = admin_web.get(f"/cases/{first}")
        assert f"Merge into this patient (P{kept})" in page.text
        done = admin_web.post(f"/cases/{first}/merge-patient",
                              data={"other": typo_web, "csrf_token": csrf_of(page.text)})
        assert done.status_code == 200 and "Patient records merged" in done.text
    assert patient_of(app, typo_web) == kept

    with app.sessions() as session:
        merged = session.execute(select(Patient).where(Patient.id == gone)).scalar_one()
        assert merged.merged_into_id == kept and merged.merged_by == "cli"  # kept, marked
    record_events = [e for e in events(app, "patient.merged") if e.case_id is None]
    assert [(e.actor, e.detail["kept"], e.detail["cases"]) for e in record_events] == [
        ("cli", kept, [typo_cli]), (ADMIN, kept, [typo_web])]
    on_cases = {e.entity_id for e in events(app, "patient.merged") if e.case_id is not None}
    assert on_cases == {typo_cli, typo_web}

    # A case sent later under the misspelt name finds the kept record through the merge.
    late, ack = new_case(service, sink, provider,
                         FULL_FORM.replace("Testpatient", "Testpatiant"), seed=61)
    assert patient_of(app, late) == kept
    assert f"This is the same patient as your case {typo_web}" in ack.text
