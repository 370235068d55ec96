"""What every screen uses: a page rendered with its one-shot message, the redirect after an
action, and the audited refusal."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from mailflow import audit
from mailflow.db.models import Case
from mailflow.web.deps import web_app, web_auth
from mailflow.web.security import FLASH_COOKIE, WebUser

log = logging.getLogger(__name__)


def render_page(request: Request, name: str, user: WebUser | None, status: int = 200,
                **context: Any) -> Response:
    auth = web_auth(request)
    flash = auth.read_flash(request.cookies.get(FLASH_COOKIE))
    response: Response = request.app.state.templates.TemplateResponse(
        request, name,
        {"user": user, "csrf": user.csrf if user else "", "flash": flash,
         "nav": context.pop("nav", ""), **context},
        status_code=status,
    )
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def back(request: Request, to: str, kind: str, message: str) -> Response:
    """After an action: a one-shot message and a redirect (POST-redirect-GET)."""
    response = RedirectResponse(to, status_code=303)
    response.set_cookie(FLASH_COOKIE, web_auth(request).flash_value(kind, message), max_age=300,
                        httponly=True, samesite="strict", path="/",
                        secure=web_app(request).config.web.secure_cookies)
    return response


def denied(app_user: WebUser, session: Any, case: Case, what: str) -> None:
    """Write the refusal to the audit log (in the caller's transaction)."""
    audit.case_event(session, case, "case.access_denied", actor=app_user.email,
                     detail={"role": app_user.role, "what": what, "via": "web"})
    log.warning("web: account %d (%s) refused %s of case %d", app_user.id, app_user.role,
                what, case.id)


def earlier_read(app_user: WebUser, session: Any, number: str, shown: dict[str, Any],
                 via: str) -> None:
    """The patient's earlier cases shown with case `number` (views.over_time) are read too:
    one `case.viewed` each, naming the case they were shown beside."""
    cases = {(c["case_id"], c["number"]) for c in shown["earlier"]} | {
        (p["case_id"], p["number"]) for row in shown["photo_rows"] for p in row["earlier"]}
    for case_id, earlier in sorted(cases):
        audit.record(session, "case.viewed", actor=app_user.email, case_id=case_id,
                     entity="case", entity_id=earlier, detail={"via": via, "beside": number})
