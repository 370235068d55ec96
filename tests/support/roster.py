"""Two dermatologists with office hours and state licences (NY and NJ) and providers in NY, NJ
and CA: the roster the assignment tests move time across (`roster_app`, a fixture)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailflow.app import App, initialise
from mailflow.db.session import transaction
from mailflow.spool import Arrival, spool
from mailflow.workflow import accounts
from mailflow.workflow.worker import drain
from tests.conftest import PASSWORD, make_config, write_schedules
from tests.support.cases import CASES, three_photos
from tests.support.mail import FULL_FORM, case_email

ET = ZoneInfo("America/New_York")
ROSTER = """
timezone = "America/New_York"

[[dermatologist]]
email = "ny.derm@derm.localhost"
max_open = 1
states = ["NY"]
[dermatologist.hours]
mon = ["09:00-17:00"]

[[dermatologist]]
email = "nj.derm@derm.localhost"
max_open = 5
states = ["NJ"]
[dermatologist.hours]
mon = ["09:00-12:00", "13:00-17:00"]
"""


@pytest.fixture
def roster_app(tmp_path: Path, db_url: str) -> Iterator[App]:
    config = make_config(tmp_path, db_url)
    write_schedules(tmp_path, ROSTER)
    initialise(config)
    app = App.open(config)
    with transaction(app.sessions) as session:
        for email in ("ny.derm@derm.localhost", "nj.derm@derm.localhost"):
            accounts.add(session, email=email, name=email.split("@")[0], role="dermatologist",
                         approved=True)
        for state in ("NY", "NJ", "CA"):
            accounts.add(session, email=f"doc.{state.lower()}@clinic.test", name=f"Dr {state}",
                         role="provider", password=PASSWORD, approved=True, license_state=state)
    yield app
    app.close()


def new_case(app: App, provider: str, n: int, photos: list | None = None) -> None:
    raw = case_email(provider, CASES, FULL_FORM.replace("3 months", f"{n} months"),
                     photos or three_photos()).as_bytes()
    spool(app, Arrival("smtp", raw, mail_from=provider, rcpt_to=(CASES,), auth_user=provider))
    drain(app)
