"""Quarantine release: an admin vouches for a held message's known sender (audited)."""

from __future__ import annotations

from sqlalchemy import func, select

from mailflow.app import App
from mailflow.db.models import AuditEvent, Case, InboundMessage
from mailflow.workflow.worker import drain
from tests.support.cases import CASES, deliver, three_photos
from tests.support.cli import run_cli
from tests.support.mail import FULL_FORM, case_email
from tests.support.web import csrf_of


def held(app: App) -> InboundMessage:
    with app.sessions() as session:
        return session.execute(select(InboundMessage).order_by(InboundMessage.id.desc())
                               ).scalars().first()


def cases(app: App) -> int:
    with app.sessions() as session:
        return session.execute(select(func.count()).select_from(Case)).scalar_one()


def test_an_admin_releases_an_unverified_case_and_it_is_processed(app: App, people, web) -> None:  # type: ignore[no-untyped-def]
    provider = people["provider"]
    # it arrived without SMTP AUTH and through no trusted relay: held as unverified
    deliver(app, case_email(provider, CASES, FULL_FORM, three_photos()).as_bytes(), provider,
            CASES, auth=False)
    message = held(app)
    assert (message.status, message.reason_code) == ("quarantined", "unverified")
    admin = web(people["admin"])
    page = admin.get("/quarantine")
    assert f'/quarantine/{message.id}/release' in page.text
    done = admin.post(f"/quarantine/{message.id}/release",
                      data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert done.status_code == 303
    drain(app)
    message = held(app)
    assert (message.status, message.route) == ("processed", "new-case")
    assert message.released_by == people["admin"] and cases(app) == 1
    with app.sessions() as session:
        assert session.execute(select(AuditEvent).where(
            AuditEvent.action == "message.released")).scalar_one().actor == people["admin"]


def test_a_forgery_cannot_be_released_and_others_cannot_try(app: App, people, web) -> None:  # type: ignore[no-untyped-def]
    provider = people["provider"]
    forged = "case+derm-2026-000001.1.aaaaaaaaaaaaaaaa@derm.localhost"
    deliver(app, case_email(provider, forged, "hello").as_bytes(), provider, forged)
    message = held(app)
    assert message.reason_code == "forged-address"
    derm = web(people["derm"])
    assert derm.post(f"/quarantine/{message.id}/release",
                     data={"csrf_token": csrf_of(derm.get("/").text)}).status_code == 403
    admin = web(people["admin"])
    page = admin.get("/quarantine")
    assert f'/quarantine/{message.id}/release' not in page.text
    admin.post(f"/quarantine/{message.id}/release", data={"csrf_token": csrf_of(page.text)})
    assert held(app).status == "quarantined"
    result = run_cli(app.config, "messages", "release", str(message.id), check=False)
    assert result.returncode == 1 and "forged-address" in result.stderr


def test_an_admin_attaches_a_held_message_to_the_case_it_belongs_to(app: App, people, web) -> None:  # type: ignore[no-untyped-def]
    from mailflow.db.models import OutboundMessage
    from tests.support.cases import send_case

    provider = people["provider"]
    number = send_case(app, provider)
    # a signed-in provider mistypes the case address: held, and told so
    forged = "case+derm-2026-000001.1.aaaaaaaaaaaaaaaa@derm.localhost"
    deliver(app, case_email(provider, forged, "The itch is worse at night.").as_bytes(),
            provider, forged)
    message = held(app)
    assert message.reason_code == "forged-address"
    admin = web(people["admin"])
    page = admin.get("/quarantine")
    assert f'action="/quarantine/{message.id}/attach"' in page.text
    missing = admin.post(f"/quarantine/{message.id}/attach", follow_redirects=False,
                         data={"csrf_token": csrf_of(page.text), "case": "DERM-2026-999999"})
    assert missing.status_code == 303, missing.text
    assert "There is no case DERM-2026-999999" in admin.get("/quarantine").text
    derm = web(people["derm"])
    assert derm.post(f"/quarantine/{message.id}/attach", data={
        "csrf_token": csrf_of(derm.get("/").text), "case": number}).status_code == 403
    done = admin.post(f"/quarantine/{message.id}/attach",
                      data={"csrf_token": csrf_of(page.text), "case": number.lower()})
    assert f"will be added to {number}" in done.text
    drain(app)
    message = held(app)
    with app.sessions() as session:
        case = session.execute(select(Case).where(Case.number == number)).scalar_one()
        assert (message.status, message.case_id) == ("processed", case.id)
        assert message.attached_by == people["admin"]
        # the comment reached the case's dermatologist, as any reply would
        forwarded = session.execute(select(OutboundMessage).where(
            OutboundMessage.case_id == case.id, OutboundMessage.kind == "comment_forward")
        ).scalars().all()
        assert len(forwarded) == 1
        audit = session.execute(select(AuditEvent).where(
            AuditEvent.action == "message.attached")).scalar_one()
        assert (audit.actor, audit.case_id) == (people["admin"], case.id)
