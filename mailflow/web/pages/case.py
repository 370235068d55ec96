"""A case's page, for whoever may see it (a refusal is audited)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from mailflow import audit
from mailflow.db.models import CaseState
from mailflow.db.session import transaction
from mailflow.web import views
from mailflow.web.deps import page_user, web_app
from mailflow.web.pages.base import denied, earlier_read, render_page
from mailflow.web.security import WebUser

router = APIRouter(include_in_schema=False)


@router.get("/cases/{number}")
def case_page(request: Request, number: str,
              user: Annotated[WebUser, Depends(page_user)]) -> Response:
    app = web_app(request)
    refused = False
    with transaction(app.sessions) as session:
        case = views.find_case(session, number)
        if case is None:
            raise HTTPException(404, f"There is no case {number[:40]}.")
        if not views.may_view(session, user, case, views.on_call_lead(app, user)):
            denied(user, session, case, "case")
            refused = True
            data: dict[str, Any] = {}
            derms: list[tuple[str, str]] = []
            can_comment = False
        else:
            data = views.case_view(app, session, case, user)
            derms = views.dermatologists(session) if user.is_admin else []
            can_comment = user.id in (case.provider_id, case.assignee_id)
            audit.case_event(session, case, "case.viewed", actor=user.email, detail={"via": "web"})
            earlier_read(user, session, case.number, data, "web")
    if refused:
        raise HTTPException(403, "This case is not one of yours.")
    return render_page(request, "case.html.j2", user, case=data, derms=derms,
                       can_act=user.is_admin, can_comment=can_comment,
                       closed=data["state"] == CaseState.CLOSED,
                       assignable=data["state"] in CaseState.UNANSWERED, nav="case")
