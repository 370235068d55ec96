"""A provider (or the assigned dermatologist) writes on the case's thread from the web."""

from __future__ import annotations

from sqlalchemy import select

from mailflow.app import App
from mailflow.db.models import AuditEvent, CaseNote, OutboundMessage
from tests.support.cases import send_case
from tests.support.web import csrf_of


def test_comments_from_the_web_are_kept_and_forwarded_and_strangers_refused(
    app: App, people, web  # type: ignore[no-untyped-def]
) -> None:
    number = send_case(app, people["provider"])
    provider = web(people["provider"])
    page = provider.get(f"/cases/{number}")
    assert "Add to the conversation" in page.text
    done = provider.post(f"/cases/{number}/comment",
                         data={"body": "The rash is <b>spreading</b> to the arms.",
                               "csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert done.status_code == 303
    with app.sessions() as session:
        note = session.execute(select(CaseNote).where(CaseNote.kind == "comment")).scalar_one()
        assert note.body == "The rash is <b>spreading</b> to the arms."
        forward = session.execute(select(OutboundMessage).where(
            OutboundMessage.kind == "comment_forward")).scalar_one()
        assert forward.to_addr == people["derm"]  # the assigned dermatologist
    shown = provider.get(f"/cases/{number}").text
    assert "&lt;b&gt;spreading&lt;/b&gt;" in shown  # escaped on the page

    derm = web(people["derm"])
    page = derm.get(f"/cases/{number}")
    derm.post(f"/cases/{number}/comment", data={"body": "Thanks, noted.",
                                                "csrf_token": csrf_of(page.text)})
    with app.sessions() as session:
        kinds = session.execute(select(OutboundMessage.to_addr).where(
            OutboundMessage.kind == "comment_forward").order_by(OutboundMessage.id)).scalars()
        assert list(kinds) == [people["derm"], people["provider"]]

    for who in ("other", "derm2"):
        stranger = web(people[who])
        token = csrf_of(stranger.get("/").text)
        refused = stranger.post(f"/cases/{number}/comment", data={"body": "hello",
                                                                    "csrf_token": token})
        assert refused.status_code == 403
    with app.sessions() as session:
        denied = session.execute(select(AuditEvent).where(
            AuditEvent.action == "case.access_denied")).scalars().all()
        assert {d.actor for d in denied} >= {people["other"], people["derm2"]}
