"""The patient's earlier cases on a case page (and in the API's case) follow the rule for
opening them: the admin, the provider and the dermatologist now treating the patient (a case of
theirs waits on that dermatologist's answer) see them summarised beside the new one, each such
read audited on the earlier case; a dermatologist with no case of the patient sees neither.
Cases by the real intake (spool + worker)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import select

from mailflow.app import App
from mailflow.db.models import Account, AuditEvent, Case
from mailflow.db.session import transaction
from mailflow.workflow import accounts
from tests.conftest import PASSWORD
from tests.support.cases import send_case

STRANGER = "dr.stranger@derm.test"


def assignee(app: App, number: str) -> str:
    with app.sessions() as session:
        return session.execute(
            select(Account.email).join(Case, Case.assignee_id == Account.id)
            .where(Case.number == number)).scalar_one()


def test_earlier_cases_are_shown_only_to_whoever_may_open_them(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient],
) -> None:
    earlier = send_case(app, people["provider"])
    later = send_case(app, people["provider"])  # the same patient: one record
    reviewer = assignee(app, later)
    assert assignee(app, earlier) != reviewer  # least open work: the other dermatologist
    with transaction(app.sessions) as session:
        accounts.add(session, email=STRANGER, name="Dr Stranger", role="dermatologist",
                     password=PASSWORD, approved=True)

    for who in (people["admin"], people["provider"], reviewer):
        page = web(who).get(f"/cases/{later}")
        over_time = page.text.split('id="over-time"', 1)[1].split("</section>", 1)[0]
        assert f'href="/cases/{earlier}"' in over_time, who
        assert over_time.count('class="compare"') == 3  # same place: every view side by side
    stranger = web(STRANGER)
    assert stranger.get(f"/cases/{later}").status_code == 403
    assert stranger.get(f"/cases/{earlier}").status_code == 403
    api = web(people["admin"]).get(f"/api/cases/{later}")
    assert api.status_code == 200
    assert [c["number"] for c in api.json()["earlier"]] == [earlier]
    with app.sessions() as session:
        readers = session.execute(select(AuditEvent).where(
            AuditEvent.action == "case.viewed", AuditEvent.entity_id == earlier)).scalars().all()
    assert sorted((e.actor, e.detail["via"], e.detail["beside"]) for e in readers) == sorted([
        (people["admin"], "web", later), (people["provider"], "web", later),
        (reviewer, "web", later), (people["admin"], "api", later)])
