"""The JSON API fuzzed from its own OpenAPI document (/api/openapi.json) with schemathesis,
through the real FastAPI app over a real database, as anonymous, an admin and two providers.

For every generated request, valid or not (negative mode: wrong types, out-of-range numbers):
never a 5xx, the body matches the documented schema, and the role checks hold: a provider's
cookie lists and reads only that provider's cases, whatever the path and query say; the
admin-only lists answer 403 to a provider; everything answers 401 without a sign-in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from mailflow.app import App
from mailflow.web.app import create_web_app
from tests.fuzz.budget import budget
from tests.support.cases import send_case

ADMIN_ONLY = {"/api/quarantine", "/api/outbox"}
ONE_CASE = {"/api/cases/{number}", "/api/cases/{number}/fhir"}  # a read of one case's PHI
CHECKS = [not_a_server_error, response_schema_conformance]


def _check_roles(role: str, path: str, number: str, response: Any, own: dict[str, set[str]],
                 ) -> None:
    status = response.status_code
    assert status < 500, (role, path, response.text[:300])
    if role == "anonymous":
        assert status == 401, (path, status)
        return
    if path in ADMIN_ONLY:
        assert status == (200 if role == "admin" else 403), (role, path, status)
    elif role != "admin" and path in ONE_CASE:
        assert status != 200 or number in own[role], (role, number, "read another's case")
        if number in own["other" if role == "provider" else "provider"]:
            assert status == 403, (role, number, status)
    elif role != "admin" and path == "/api/cases" and status == 200:
        listed = {c["number"] for c in response.json()["cases"]}
        assert listed <= own[role], (role, listed - own[role])


def test_api_from_its_openapi_document(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient],
) -> None:
    own = {"provider": {send_case(app, people["provider"])},
           "other": {send_case(app, people["other"])}}
    numbers = sorted(own["provider"] | own["other"])
    cookies = {role: dict(web(people[role]).cookies) if role != "anonymous" else {}
               for role in ("anonymous", "admin", "provider", "other")}
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", create_web_app(app))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} == {"/api/cases", *ONE_CASE, *ADMIN_ONLY}
    seen: set[tuple[str, str, int]] = set()

    def send(case: Any) -> None:
        """The same request as each role in turn: the answers differ by role only."""
        number = (case.path_parameters or {}).get("number", "")
        for role, jar in cookies.items():
            response = case.call(cookies=jar)
            _check_roles(role, case.operation.path, number, response, own)
            case.validate_response(response, checks=CHECKS)
            seen.add((role, case.operation.path, response.status_code))

    def request_for(pair: tuple[Any, GenerationMode]) -> Any:
        # a named function, not a lambda: Hypothesis describes a lambda by parsing its source
        # with `ast`, which deep in a draw can hit CPython 3.11.7's "AST constructor recursion
        # depth mismatch" SystemError (gh-106905)
        operation, mode = pair
        return operation.as_strategy(mode)

    @budget(40)
    @given(st.tuples(st.sampled_from(operations), st.sampled_from(list(GenerationMode))).flatmap(
        request_for),  # valid requests and invalid ones
           st.sampled_from([None, *numbers]))
    def generated(case: Any, known: str | None) -> None:
        if known is not None and "number" in (case.path_parameters or {}):
            case.path_parameters = {"number": known}  # a real case, not only random strings
        send(case)

    generated()
    for op in operations:  # and every operation on every real case, whatever was generated
        for number in numbers if "{number}" in op.path else [""]:
            send(op.Case(path_parameters={"number": number} if number else None))
    assert ("provider", "/api/cases/{number}", 200) in seen
    assert ("other", "/api/cases/{number}", 403) in seen
    assert ("other", "/api/cases/{number}/fhir", 403) in seen
