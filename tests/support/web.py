"""The web side as a browser uses it: the CSRF token of a page, signing in, and accounts of
every role and signed-in clients (the `people` and `web` fixtures, imported by the conftests
that offer them)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from mailflow.app import App
from mailflow.db.session import transaction
from mailflow.web.app import create_web_app
from mailflow.workflow import accounts
from tests.conftest import PASSWORD

ADMIN = "admin@derm.localhost"
OTHER_PROVIDER = "dr.other@clinic.test"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


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
