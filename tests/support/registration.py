"""Registering by email: the form a new provider sends, and a registration waiting for an admin."""

from __future__ import annotations

import email
import re
from email.policy import default as default_policy

from sqlalchemy import select

from mailflow.app import App
from mailflow.db.models import OutboundMessage
from mailflow.workflow import accounts
from tests.support.cases import deliver
from tests.support.mail import case_email

REGISTER = "register@derm.localhost"
FORM = """Name: Dr Robin Newcomer
Practice: Lakeside Family Medicine
NPI: 1234567893
Phone: 555-0142
License state: NJ
"""
NEW = "robin@lakeside.test"


def registered(app: App) -> int:
    """A registration by email from NEW, processed and waiting for approval; the account id."""
    deliver(app, case_email(NEW, REGISTER, FORM).as_bytes(), NEW, REGISTER, auth=False)
    with app.sessions() as session:
        account = accounts.find(session, NEW)
        assert account is not None and account.status == "pending"
        return account.id


def welcome_link(app: App) -> str:
    """The set-password path in the welcome email."""
    with app.sessions() as session:
        row = session.execute(select(OutboundMessage).where(
            OutboundMessage.kind == "registration_confirmed")).scalar_one()
    msg = email.message_from_bytes(app.blobs.get(row.blob_sha), policy=default_policy)
    found = re.search(r"http://[^/\s]+(/set-password/\S+)", msg.get_body(("plain",)).get_content())
    assert found
    return found.group(1)
