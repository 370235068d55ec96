"""Web fixtures: the FastAPI app over the real database of the shared fixtures, accounts of
every role, and cases made by the real intake (spool + worker), as the e2e SLA tests do."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailflow.app import App
from mailflow.db.models import Case
from mailflow.db.session import transaction
from mailflow.intake.spool import Arrival, spool
from mailflow.web.app import create_web_app
from mailflow.workflow import accounts
from mailflow.workflow.worker import drain
from tests.conftest import PASSWORD
from tests.e2e.test_case_intake import CASES, three_photos
from tests.support.mail import FULL_FORM, case_email

ADMIN = "admin@derm.localhost"
OTHER_PROVIDER = "dr.other@clinic.test"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def deliver(app: App, raw: bytes, sender: str, rcpt: str, auth: bool = True) -> None:
    spool(app, Arrival("smtp", raw, mail_from=sender, rcpt_to=(rcpt,),
                       auth_user=sender if auth else ""))
    drain(app)


def send_case(app: App, provider: str, form: str = FULL_FORM) -> str:
    deliver(app, case_email(provider, CASES, form, three_photos()).as_bytes(), provider, CASES)
    with app.sessions() as session:
        case = session.execute(select(Case).order_by(Case.id.desc())).scalars().first()
        assert case is not None
        return case.number


def csrf_of(html: str) -> str:
    found = TOKEN.search(html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def sign_in(client: TestClient, email: str, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    page = client.get("/login")
    return client.post("/login", data={"email": email, "password": password,
                                       "csrf_token": csrf_of(page.text)},
                       follow_redirects=False)


@pytest.fixture
def people(app: App, provider: str, dermatologists: tuple[str, str]) -> dict[str, str]:
    with transaction(app.sessions) as session:
        accounts.add(session, email=ADMIN, name="Ada Admin", role="admin",
                     password=PASSWORD, approved=True)
        accounts.add(session, email=OTHER_PROVIDER, name="Dr Other", role="provider",
                     password=PASSWORD, approved=True, license_state="NY")
    return {"admin": ADMIN, "provider": provider, "other": OTHER_PROVIDER,
            "derm": dermatologists[0], "derm2": dermatologists[1]}


@pytest.fixture
def web(app: App) -> Iterator[Callable[[str | None], TestClient]]:
    """A browser factory: web("admin@…") is signed in as that account, web(None) is anonymous."""
    made: list[TestClient] = []

    def client(email: str | None = None) -> TestClient:
        c = TestClient(create_web_app(app))
        c.__enter__()
        made.append(c)
        if email is not None:
            response = sign_in(c, email)
            assert response.status_code == 303, response.text
        return c

    yield client
    for c in made:
        c.__exit__(None, None, None)


@pytest.fixture
def case_number(app: App, people: dict[str, str]) -> str:
    return send_case(app, people["provider"])
