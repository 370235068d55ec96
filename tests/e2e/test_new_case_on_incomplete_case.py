""""New case: yes" on the thread of a case still waiting for details (issue #14 item 1, the
defect found after it): through the real SMTP door, the reply opens a new case of the same
patient and the waiting case keeps only what it had. Merging the reply into the waiting case
would put one episode's photos under another's history and body site."""

from __future__ import annotations

from sqlalchemy import select

from mailflow.app import App
from mailflow.db.models import Case, CaseImage, CaseNote, OutboundMessage
from tests.conftest import RunningService
from tests.support.cases import CASE_NUMBER, CASES
from tests.support.images import skin_photo
from tests.support.mail import FULL_FORM, case_email, reply_to
from tests.support.review import send
from tests.support.sink import Delivered, RelaySink

VIEWS = ("distribution.jpg", "closeup_front.jpg", "oblique_side.jpg")
NEW_EPISODE = """New case: yes
Reason for referral: a new dark spot on the back, changing colour
Location on body: upper back, left side
Duration: 2 weeks
Patient consent to photos: yes
"""


def photos(first_seed: int, count: int = 3) -> list[tuple[str, bytes]]:
    return [(name, skin_photo(width=800, height=600, seed=first_seed + i))
            for i, name in enumerate(VIEWS[:count])]


def number_of(ack: Delivered) -> str:
    found = CASE_NUMBER.search(str(ack.message["Subject"]))
    assert found, ack.message["Subject"]
    return found.group(0)


def snapshot(app: App, number: str) -> dict[str, object]:
    """What a reply could change on a case: fields, photos, notes, state, clocks, emails."""
    with app.sessions() as session:
        case = session.execute(select(Case).where(Case.number == number)).scalar_one()
        return {
            "state": case.state, "form": dict(case.form), "missing": list(case.missing),
            "problems": [list(p) for p in case.form_problems],
            "updated": case.updated_at, "active": case.last_activity_at,
            "images": session.execute(select(CaseImage.filename).where(
                CaseImage.case_id == case.id).order_by(CaseImage.position)).scalars().all(),
            "notes": session.execute(select(CaseNote.id).where(
                CaseNote.case_id == case.id)).scalars().all(),
            "emails": session.execute(select(OutboundMessage.kind).where(
                OutboundMessage.case_id == case.id)).scalars().all(),
            "patient": case.patient_id,
        }


def words(text: str) -> str:
    return " ".join(text.split())


def asked_for(ack: Delivered) -> str:
    """The "Please reply to this email with:" list of an acknowledgement."""
    return ack.text.split("Please reply to this email with:")[1].split("You can put")[0]


def waiting_case_and_reply(service: RunningService, sink: RelaySink, provider: str,
                           form: str, count: int) -> tuple[str, Delivered]:
    """A case sent with something missing, then the provider's "New case: yes" reply to its
    "more needed" email: the waiting case's number and the reply's acknowledgement."""
    send(service, provider, case_email(provider, CASES, form, photos(1, count)))
    first_ack = sink.wait_for(provider)[0]
    assert "more needed" in str(first_ack.message["Subject"])
    msg, address = reply_to(first_ack, provider, NEW_EPISODE, photos(21))
    send(service, provider, msg, address)
    return number_of(first_ack), sink.wait_for(provider, 2)[1]


def test_new_case_on_a_case_missing_a_photo(app: App, sink: RelaySink,
                                            service: RunningService, provider: str) -> None:
    send(service, provider, case_email(provider, CASES, FULL_FORM, photos(1, 2)))
    first_ack = sink.wait_for(provider)[0]
    first = number_of(first_ack)
    before = snapshot(app, first)
    assert before["state"] == "incomplete" and len(before["images"]) == 2  # type: ignore[arg-type]

    msg, address = reply_to(first_ack, provider, NEW_EPISODE, photos(21))
    send(service, provider, msg, address)
    ack = sink.wait_for(provider, 2)[1]

    # the provider is told of a new case, complete, and that the first still waits
    second = number_of(ack)
    assert second != first
    assert str(ack.message["Subject"]) == f"Case {second} received"
    assert "now complete" not in ack.text and first not in str(ack.message["Subject"])
    assert f"This is the same patient as your case {first}" in ack.text
    assert (f"Your earlier case {first} still waits for what we asked for in our email about "
            "it. We left it as it was. To finish it, reply to that email.") in words(ack.text)
    assert "Location on body: upper back, left side" in ack.text
    assert "incomplete" not in ack.text.lower()

    # the first case is exactly as it was: still waiting, no new photos, fields or clock
    assert snapshot(app, first) == before
    after = snapshot(app, second)
    assert after["state"] == "submitted"  # no dermatologist in this test to assign it to
    assert after["patient"] == before["patient"] is not None
    assert after["images"] == list(VIEWS)
    form = after["form"]
    assert isinstance(form, dict)
    assert form["location"] == "upper back, left side"
    assert form["question"].startswith("a new dark spot")
    assert form["date_of_birth"] == "1961-03-04"  # the patient's details carried over
    assert len(sink.to(provider)) == 2  # nothing else went to the provider


def test_a_date_of_birth_the_waiting_case_questions_is_asked_again(
        app: App, sink: RelaySink, service: RunningService, provider: str) -> None:
    unreadable = FULL_FORM.replace("Date of birth: 1961-03-04", "Date of birth: spring 1961")
    first, ack = waiting_case_and_reply(service, sink, provider, unreadable, 3)

    second = number_of(ack)
    assert second != first and "more needed" in str(ack.message["Subject"])
    assert "Date of birth" in asked_for(ack)  # not taken from the first case as if read
    assert f"Your earlier case {first} still waits" in words(ack.text)
    after = snapshot(app, second)
    form = after["form"]
    assert isinstance(form, dict)
    assert "date_of_birth" not in form and form["patient_name"] == "Jane Testpatient"
    assert after["state"] == "incomplete"
    earlier = snapshot(app, first)  # still waiting for its date of birth, nothing added
    assert earlier["state"] == "incomplete" and earlier["missing"] == ["date_of_birth"]
    assert (earlier["notes"], earlier["emails"]) == ([], ["ack_incomplete"])
