"""Which patient record a case joins (keyed look-ups: name and date of birth, and the MRN when
both sides have one) and the merge's refusals, called directly on both databases. The story
through the doors is tests/e2e/test_patient_over_time.py."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mailflow.app import App
from mailflow.db.models import Account, Case, Patient
from mailflow.db.session import transaction
from mailflow.workflow import accounts, cases, patients
from tests.conftest import PASSWORD

JANE = {"patient_name": "Jane Testpatient", "date_of_birth": "1961-03-04"}


def open_case(app: App, provider: str, **fields: str) -> int:
    """A case of `provider` whose form holds these patient fields; its patient record's id."""
    with transaction(app.sessions) as session:
        doc = session.execute(select(Account).where(Account.email == provider)).scalar_one()
        case = cases.open_case(session, provider=doc, form=dict(fields), labels={},
                               problems=[], missing=["question"], urgency="routine",
                               subject="", actor=provider)
        found = cases.record_patient(session, app.keys, case, dict(fields), "", provider)
        assert found is not None and case.patient_id == found.id
        return found.id


@pytest.fixture
def other(app: App) -> str:
    with transaction(app.sessions) as session:
        accounts.add(session, email="dr.other@clinic.test", name="Dr Other", role="provider",
                     password=PASSWORD, approved=True)
    return "dr.other@clinic.test"


def test_the_mrn_tells_two_patients_apart_only_when_both_sides_have_one(
    app: App, provider: str,
) -> None:
    first = open_case(app, provider, **JANE, mrn="MRN-1")
    assert open_case(app, provider, **JANE) == first  # no MRN: joins
    assert open_case(app, provider, **JANE, mrn="mrn-1 ") == first  # as typed, same MRN
    other = open_case(app, provider, **JANE, mrn="MRN-2")  # another MRN: another patient
    assert other != first
    assert open_case(app, provider, **JANE, mrn="MRN-2") == other
    guessed = open_case(app, provider, **JANE)  # two candidates now: neither is guessed
    assert guessed not in (first, other)
    assert open_case(app, provider, patient_name="Jane Testpatient",
                     date_of_birth="1961-03-05") not in (first, other, guessed)
    with app.sessions() as session:
        clear = session.execute(select(Patient.lookup, Patient.mrn_lookup)).all()
    assert not any("Testpatient" in str(v) or "MRN" in str(v) for row in clear for v in row)


def test_a_record_without_an_mrn_takes_the_first_one_given(app: App, provider: str) -> None:
    first = open_case(app, provider, **JANE)
    assert open_case(app, provider, **JANE, mrn="MRN-9") == first
    assert open_case(app, provider, **JANE, mrn="MRN-8") != first  # it has one now


def test_a_merge_is_refused_across_providers_and_for_a_record_merged_away(
    app: App, provider: str, other: str,
) -> None:
    mine = open_case(app, provider, **JANE)
    typo = open_case(app, provider, patient_name="Jane Testpatiant", date_of_birth="1961-03-04")
    theirs = open_case(app, other, **JANE)
    assert len({mine, typo, theirs}) == 3  # a record is one provider's
    with transaction(app.sessions) as session:
        keep, gone, foreign = (session.get(Patient, i) for i in (mine, typo, theirs))
        assert keep is not None and gone is not None and foreign is not None
        with pytest.raises(patients.MergeError, match="different providers"):
            patients.merge(session, keep, [foreign], actor="admin@derm.localhost")
        done = patients.merge(session, keep, [gone], actor="admin@derm.localhost")
        assert done.merged == [typo] and patients.merge(
            session, keep, [gone], actor="admin@derm.localhost").merged == []
        with pytest.raises(patients.MergeError, match="keep that one"):
            patients.merge(session, gone, [keep], actor="admin@derm.localhost")
    # the misspelt name later finds the kept record through the merged one
    assert open_case(app, provider, patient_name="jane testpatiant",
                     date_of_birth="1961-03-04") == mine
    with app.sessions() as session:
        assert session.execute(select(Case.patient_id).distinct().where(
            Case.patient_id.in_((mine, typo)))).scalars().all() == [mine]
