"""Resend the report (issue #5 item 5): the same PDF goes to the provider again, audited."""

from __future__ import annotations

import email
from email.policy import default as default_policy

from sqlalchemy import select

from mailflow.app import App
from mailflow.db.models import OutboundMessage
from mailflow.workflow.report_runner import deliver_pending_reports
from tests.support.cases import deliver, send_case
from tests.support.review import ANSWER
from tests.support.web import csrf_of


def outbound(app: App, kind: str) -> list[email.message.EmailMessage]:
    with app.sessions() as session:
        rows = session.execute(select(OutboundMessage).where(OutboundMessage.kind == kind)
                               .order_by(OutboundMessage.id)).scalars().all()
    return [email.message_from_bytes(app.blobs.get(r.blob_sha), policy=default_policy)
            for r in rows]


def pdf(msg: email.message.EmailMessage) -> bytes:
    return next(p for p in msg.iter_attachments()
                if p.get_content_type() == "application/pdf").get_content()


def test_an_admin_resends_the_report_and_a_case_without_one_says_so(app: App, people, web) -> None:  # type: ignore[no-untyped-def]
    number = send_case(app, people["provider"])
    admin = web(people["admin"])
    page = admin.get(f"/cases/{number}")
    assert "Resend the report" not in page.text
    refused = admin.post(f"/cases/{number}/resend-report",
                         data={"csrf_token": csrf_of(page.text)})
    assert "no consult report yet" in refused.text

    notification = outbound(app, "derm_case")[0]
    address = notification["Reply-To"].addresses[0].addr_spec
    from tests.support.mail import case_email

    reply = case_email(people["derm"], address, ANSWER, subject=f"Re: {notification['Subject']}",
                       headers={"In-Reply-To": notification["Message-ID"]})
    deliver(app, reply.as_bytes(), people["derm"], address)
    deliver_pending_reports(app)
    first = outbound(app, "consult")[0]

    page = admin.get(f"/cases/{number}")
    assert "Resend the report" in page.text
    done = admin.post(f"/cases/{number}/resend-report", data={"csrf_token": csrf_of(page.text)},
                      follow_redirects=False)
    assert done.status_code == 303
    again = outbound(app, "consult_resent")
    assert len(again) == 1 and str(again[0]["To"]) == people["provider"]
    assert "sending the consult report" in again[0].get_body(("plain",)).get_content()
    assert pdf(again[0]) == pdf(first)  # the same report, unchanged
    provider = web(people["provider"])
    assert provider.post(f"/cases/{number}/resend-report",
                         data={"csrf_token": csrf_of(provider.get("/").text)}).status_code == 403
