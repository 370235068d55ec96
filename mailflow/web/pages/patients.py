"""An admin's merge of two patient records that are the same person, from a case's page: the
case's record is kept, the other's cases move to it (workflow/patients.py, audited)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import Response

from mailflow.db.session import transaction
from mailflow.web import views
from mailflow.web.deps import admin_post, web_app
from mailflow.web.pages.base import back
from mailflow.web.security import WebUser
from mailflow.workflow.patients import MergeError, merge, record_named

router = APIRouter(include_in_schema=False)


@router.post("/cases/{number}/merge-patient")
def merge_patient(request: Request, number: str, user: Annotated[WebUser, Depends(admin_post)],
                  other: Annotated[str, Form()] = "") -> Response:
    app = web_app(request)
    page = f"/cases/{number.strip().upper()}"
    try:
        with transaction(app.sessions) as session:
            case = views.find_case(session, number)
            if case is None:
                raise HTTPException(404, "No such case.")
            if case.patient is None:
                raise MergeError(f"{case.number} has no patient record yet")
            done = merge(session, case.patient, [record_named(session, other)],
                         actor=user.email)
    except MergeError as exc:
        return back(request, page, "error", f"Nothing was merged: {exc}.")
    if not done.merged:
        return back(request, page, "ok", f"Nothing to do: {done.words()}.")
    return back(request, page, "ok", f"Patient records {done.words()}.")
