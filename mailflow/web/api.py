"""The JSON API under /api/: the same session cookie and role rules as the pages (401 when not
signed in), and the same audit entries for every PHI read."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel

from mailflow import audit
from mailflow.db.session import transaction
from mailflow.web import views
from mailflow.web.deps import admin_api, api_user, web_app
from mailflow.web.pages.base import denied, earlier_read
from mailflow.web.security import WebUser
from mailflow.workflow import fhir

router = APIRouter(prefix="/api", tags=["api"])


class OpenCaseOut(BaseModel):
    number: str
    state: str
    urgency: str
    assignee: str | None
    assignee_name: str | None
    submitted_at: datetime | None
    deadline: datetime | None
    deadline_words: str
    target_minutes: int | None
    minutes_left: float | None
    sla: str


class MetToday(BaseModel):
    met: int
    measured: int
    percent: float | None


class CasesOut(BaseModel):
    total: int
    cases: list[OpenCaseOut]
    counts: dict[str, int]
    met_today: MetToday


class HeldMessage(BaseModel):
    id: int
    received_at: datetime
    sender: str
    to: list[str]
    auth_user: str
    tls: bool
    source: str
    size: int
    route: str
    reason_code: str
    reason: str
    last_error: str
    case: str | None


class Delivery(BaseModel):
    id: int
    created_at: datetime
    kind: str
    to: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str
    case: str | None
    retryable: bool


@router.get("/cases", response_model=CasesOut, summary="Open cases against their deadlines")
def list_cases(
    request: Request,
    user: Annotated[WebUser, Depends(api_user)],
    sort: str = views.DEFAULT_SORT,
    descending: bool = False,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,  # past any real list
) -> dict[str, Any]:
    """Admins: every open case; dermatologists: their queue; providers: their own."""
    app = web_app(request)
    with app.sessions() as session:
        rows, total = views.open_cases(app, session, user, sort, descending, limit, offset)
        return {"total": total, "cases": [r.as_json() for r in rows],
                "counts": views.state_counts(session, user),
                "met_today": views.met_today(app, session, user)}


@router.get("/cases/{number}", summary="One case in full (a PHI read: audited)")
def get_case(request: Request, number: str,
             user: Annotated[WebUser, Depends(api_user)]) -> Any:
    app = web_app(request)
    refused = False
    with transaction(app.sessions) as session:
        case = views.find_case(session, number)
        if case is None:
            raise HTTPException(404, "no such case")
        if not views.may_view(session, user, case):
            denied(user, session, case, "case")
            refused = True
            data: dict[str, Any] = {}
        else:
            data = views.case_view(app, session, case, user)
            audit.case_event(session, case, "case.viewed", actor=user.email, detail={"via": "api"})
            earlier_read(user, session, case.number, data, "api")
    if refused:
        raise HTTPException(403, "not one of your cases")
    return jsonable_encoder(data)


@router.get("/cases/{number}/fhir", response_class=Response,
            responses={200: {"content": {"application/fhir+json": {}}}},
            summary="The consult as a FHIR R4 document Bundle (a PHI read: audited)")
def get_case_fhir(request: Request, number: str,
                  user: Annotated[WebUser, Depends(api_user)]) -> Response:
    """Who may read the case may take its consult to their EHR; 409 before the first report."""
    app = web_app(request)
    refused, text, missing = False, "", ""
    with transaction(app.sessions) as session:
        case = views.find_case(session, number)
        if case is None:
            raise HTTPException(404, "no such case")
        if not views.may_view(session, user, case):
            denied(user, session, case, "fhir")
            refused = True
        else:
            try:
                text = fhir.bundle_json(app, session, case)
            except fhir.NoReport:
                missing = "this case has no consult report yet"
            else:
                audit.case_event(session, case, "case.fhir_exported", actor=user.email,
                                 detail={"via": "api"})
    if refused:
        raise HTTPException(403, "not one of your cases")
    if missing:
        raise HTTPException(409, missing)
    return Response(text, media_type="application/fhir+json")


@router.get("/quarantine", response_model=list[HeldMessage],
            summary="Messages held for an administrator")
def list_quarantine(request: Request,
                    user: Annotated[WebUser, Depends(admin_api)]) -> list[dict[str, Any]]:
    with web_app(request).sessions() as session:
        return [{**m, "sender": m["from"]} for m in views.quarantine(session)]


@router.get("/outbox", response_model=list[Delivery],
            summary="Outbound email not delivered yet, or given up")
def list_outbox(request: Request,
                user: Annotated[WebUser, Depends(admin_api)]) -> list[dict[str, Any]]:
    with web_app(request).sessions() as session:
        return views.outbox(session)
