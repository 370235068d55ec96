"""A number too big for the database, in any route's int parameter, is "not found" (404) or a
refused query (422), never a server error (issue #11: OverflowError on SQLite was a 500).

The routes are read from the app itself, so a route added later is covered too."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from mailflow.app import App
from mailflow.web.app import create_web_app
from tests.support.web import csrf_of

HUGE = 2**70


def _is_int(field: object) -> bool:
    annotation = getattr(getattr(field, "field_info", None), "annotation", None)
    return annotation is int or "int" in re.findall(r"\w+", str(annotation))


def _int_params(route: APIRoute) -> Iterator[tuple[str, str]]:
    """(where, name) of every int path or query parameter of the route and its dependencies."""
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        stack.extend(dependant.dependencies)
        for where, fields in (("path", dependant.path_params), ("query", dependant.query_params)):
            yield from ((where, f.alias) for f in fields if _is_int(f))


def _routes(app: App) -> Iterator[tuple[str, set[str], APIRoute]]:
    """(full path, methods, route) of every endpoint, routers included."""
    for context in iter_route_contexts(create_web_app(app).routes):
        route = context.original_route
        if isinstance(route, APIRoute) and context.path:
            yield context.path, set(context.methods or ()), route


def _url(path: str, case_number: str, where: str, name: str) -> str:
    """The route's path with HUGE in the one parameter, a real case for {number}."""

    def fill(match: re.Match[str]) -> str:
        param = match.group(1)
        if param == name and where == "path":
            return str(HUGE)
        return case_number if param == "number" else "x"

    path = re.sub(r"\{(\w+)(?::\w+)?\}", fill, path)
    return f"{path}?{name}={HUGE}" if where == "query" else path


def test_every_int_parameter_of_every_route_refuses_a_huge_number(
    app: App, people: dict[str, str], web: Callable[[str | None], TestClient], case_number: str,
) -> None:
    targets = [(path, methods, where, name) for path, methods, route in _routes(app)
               for where, name in _int_params(route)]
    # the ones the issue named are among them: the enumeration sees what it should
    seen = {(path, name) for path, _m, _w, name in targets}
    assert {("/cases/{number}/photos/{position:int}/photo", "position"),
            ("/cases/{number}/report.pdf", "version"),
            ("/quarantine/{message_id:int}/discard", "message_id"),
            ("/outbox/{outbound_id:int}/retry", "outbound_id"),
            ("/api/cases", "offset")} <= seen, seen
    admin = web(people["admin"])
    token = csrf_of(admin.get("/").text)
    answers = {}
    for path, methods, where, name in targets:
        url = _url(path, case_number, where, name)
        for method in sorted(methods):
            form = {"csrf_token": token} if method == "POST" else None
            try:
                response = admin.request(method, url, data=form, follow_redirects=False)
            except Exception as exc:  # the test client re-raises what would be a 500
                answers[(method, url)] = repr(exc)
                continue
            answers[(method, url)] = response.status_code
    wrong = {k: v for k, v in answers.items() if v not in (404, 422)}
    assert not wrong, wrong
