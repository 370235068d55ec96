"""Every endpoint's role checks: anonymous, admin, the assigned dermatologist, another
dermatologist, the case's provider and another provider."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mailflow.app import App
from mailflow.db.models import AuditEvent
from tests.support.web import csrf_of

ROLES = ("anonymous", "admin", "derm", "derm2", "provider", "other")
PAGE = {"anonymous": 303}  # pages send the anonymous browser to the sign-in page
API = {"anonymous": 401}

# expected status per role; a role not named gets the value under "*"
GETS: list[tuple[str, dict[str, int]]] = [
    ("/", {**PAGE, "*": 200}),
    ("/cases/{n}", {**PAGE, "derm2": 403, "other": 403, "*": 200}),
    ("/cases/{n}/photos/1/thumb", {**PAGE, "derm2": 403, "other": 403, "*": 200}),
    ("/cases/{n}/photos/3/photo", {**PAGE, "derm2": 403, "other": 403, "*": 200}),
    ("/cases/{n}/report.pdf", {**PAGE, "derm2": 403, "other": 403, "*": 404}),  # none yet
    ("/quarantine", {**PAGE, "admin": 200, "*": 403}),
    ("/outbox", {**PAGE, "admin": 200, "*": 403}),
    ("/api/cases", {**API, "*": 200}),
    ("/api/cases/{n}", {**API, "derm2": 403, "other": 403, "*": 200}),
    ("/api/quarantine", {**API, "admin": 200, "*": 403}),
    ("/api/outbox", {**API, "admin": 200, "*": 403}),
    ("/healthz", {"*": 200}),
    ("/metrics", {"*": 200}),
    ("/api/openapi.json", {"*": 200}),
]
ADMIN_POSTS = ["/cases/{n}/reassign", "/cases/{n}/close", "/quarantine/1/reprocess",
               "/quarantine/1/discard", "/outbox/1/retry"]


def client_as(web: Callable[[str | None], TestClient], people: dict[str, str], role: str
              ) -> TestClient:
    return web(None if role == "anonymous" else people[role])


@pytest.mark.parametrize("role", ROLES)
def test_every_get_endpoint_checks_the_role(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient], case_number: str,
    role: str,
) -> None:
    client = client_as(web, people, role)
    for path, expected in GETS:
        url = path.format(n=case_number)
        response = client.get(url, follow_redirects=False)
        want = expected.get(role, expected["*"])
        assert response.status_code == want, (role, url, response.text[:300])
        if want == 303:
            assert response.headers["location"].startswith("/login")


@pytest.mark.parametrize("role", ["anonymous", "derm", "provider"])
def test_admin_actions_are_refused_to_everyone_else(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient], case_number: str,
    role: str,
) -> None:
    client = client_as(web, people, role)
    token = "" if role == "anonymous" else csrf_of(client.get("/").text)
    for path in ADMIN_POSTS:
        response = client.post(path.format(n=case_number),
                               data={"csrf_token": token, "to": people["derm2"]},
                               follow_redirects=False)
        assert response.status_code == (303 if role == "anonymous" else 403), path
        if role == "anonymous":
            assert response.headers["location"].startswith("/login")
    admin = web(people["admin"])
    assert "Dr Derm One" in admin.get(f"/cases/{case_number}").text  # nothing changed


def test_a_provider_opening_another_providers_case_is_refused_and_audited(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient], case_number: str,
) -> None:
    other = web(people["other"])
    page = other.get(f"/cases/{case_number}")
    assert page.status_code == 403
    assert "Jane Testpatient" not in page.text and "not one of yours" in page.text
    assert other.get(f"/api/cases/{case_number}").status_code == 403
    assert other.get(f"/cases/{case_number}/photos/1/photo").status_code == 403
    with app.sessions() as session:
        refusals = session.execute(select(AuditEvent).where(
            AuditEvent.action == "case.access_denied")).scalars().all()
        viewed = session.execute(select(AuditEvent).where(
            AuditEvent.action == "case.viewed")).scalars().all()
    assert [(e.actor, e.detail["what"]) for e in refusals] == [
        (people["other"], "case"), (people["other"], "case"), (people["other"], "photo full")]
    assert all(e.entity_id == case_number for e in refusals)
    assert viewed == []


def test_the_api_lists_only_what_each_role_may_see(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient], case_number: str,
) -> None:
    seen = {role: [c["number"] for c in web(people[role]).get("/api/cases").json()["cases"]]
            for role in ("admin", "derm", "derm2", "provider", "other")}
    assert seen == {"admin": [case_number], "derm": [case_number], "derm2": [],
                    "provider": [case_number], "other": []}


def test_a_dermatologist_sees_their_queue_not_the_admin_pages(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient], case_number: str,
) -> None:
    derm = web(people["derm"])
    home = derm.get("/")
    assert "My queue" in home.text and case_number in home.text
    assert 'href="/quarantine"' not in home.text
    page = derm.get("/quarantine")
    assert page.status_code == 403 and "for administrators" in page.text
    assert derm.get("/api/outbox").status_code == 403


def test_a_provider_sees_their_own_cases(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient], case_number: str,
) -> None:
    home = web(people["provider"]).get("/")
    assert "My cases" in home.text and case_number in home.text
    assert case_number not in web(people["other"]).get("/").text
    page = web(people["provider"]).get(f"/cases/{case_number}")
    assert "Audit trail" not in page.text and "Reassign" not in page.text
    # their timeline has the milestones, not the internal routing
    assert "Case received" in page.text and "Complete: with the dermatologists" in page.text
    assert "Email out" not in page.text and "SLA clock" not in page.text
    assert "assigned by" not in page.text
