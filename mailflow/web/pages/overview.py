"""The home page: a provider's own cases, or the staff's SLA overview of open cases."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from mailflow import audit
from mailflow.db.models import CaseState, Role
from mailflow.db.session import transaction
from mailflow.web import views
from mailflow.web.deps import page_user, web_app
from mailflow.web.pages.base import render_page
from mailflow.web.security import WebUser
from mailflow.workflow import patient_history

router = APIRouter(include_in_schema=False)


@router.get("/")
def overview(request: Request, user: Annotated[WebUser, Depends(page_user)],
             sort: str = views.DEFAULT_SORT, dir: str = "asc") -> Response:
    app = web_app(request)
    if user.role == Role.PROVIDER:
        with transaction(app.sessions) as session:
            mine = views.provider_cases(session, user)
            patients = patient_history.of_provider(session, user.id,
                                                   app.config.patients.portal_patients)
            if patients and "x-live" not in request.headers:  # a page opened, not refreshed
                audit.record(session, "patients.listed", actor=user.email, entity="account",
                             entity_id=user.id, detail={"patients": len(patients), "via": "web"})
        return render_page(request, "provider_home.html.j2", user, cases=mine,
                           patients=patients, nav="home")
    sort = sort if sort in views.SORTS else views.DEFAULT_SORT
    descending = dir == "desc"
    with app.sessions() as session:
        rows, total = views.open_cases(app, session, user, sort, descending,
                                       limit=app.config.web.overview_limit)
        counts = views.state_counts(session, user)
        met = views.met_today(app, session, user)
        breached = views.breached_count(session, user)
    summary = {s: sum(1 for r in rows if r.sla == s) for s in ("on-track", "at-risk", "paused")}
    summary["breached"] = breached
    return render_page(request, "overview.html.j2", user, rows=rows, total=total,
                       counts=counts, met=met, sort=sort, descending=descending,
                       summary=summary, open_states=CaseState.UNANSWERED, nav="overview")
