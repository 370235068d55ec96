"""Web fixtures: the FastAPI app over the real database of the shared fixtures, accounts of
every role and signed-in clients (`people`, `web`: tests/support/web.py), and cases made by the
real intake (spool + worker), as the e2e SLA tests do."""

from __future__ import annotations

import pytest

from mailflow.app import App
from tests.support.cases import send_case
from tests.support.web import people, web

__all__ = ["people", "web"]  # fixtures for the web tests, from tests/support/web.py


@pytest.fixture
def case_number(app: App, people: dict[str, str]) -> str:
    return send_case(app, people["provider"])
