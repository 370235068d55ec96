"""The case page's urgency action: an admin or the assigned dermatologist sets routine or
urgent; the referring provider may raise it. workflow/urgency.py decides and audits."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import Response

from mailflow.db.models import Account, Case, Role
from mailflow.db.session import transaction
from mailflow.web.deps import posted_by, web_app
from mailflow.web.pages.base import back, denied
from mailflow.web.security import WebUser
from mailflow.workflow.cases import TransitionError
from mailflow.workflow.numbers import find_case
from mailflow.workflow.urgency import URGENCIES, set_urgency

router = APIRouter(include_in_schema=False)


def _on_the_case(case: Case, account: Account | None) -> bool:
    if account is None:
        return False
    return account.role == Role.ADMIN or account.id in (case.provider_id, case.assignee_id)


@router.post("/cases/{number}/urgency")
def change_urgency(request: Request, number: str, user: Annotated[WebUser, Depends(posted_by)],
                   urgency: Annotated[str, Form()] = "") -> Response:
    app = web_app(request)
    number = number.upper()
    if urgency not in URGENCIES:
        return back(request, f"/cases/{number}", "error", "Choose routine or urgent.")
    try:
        with transaction(app.sessions) as session:
            case = find_case(session, number, lock=True)
            if case is None:
                raise HTTPException(404, "No such case.")
            account = session.get(Account, user.id)
            if not _on_the_case(case, account):
                denied(user, session, case, "urgency")
                allowed = False
            else:
                allowed = True
                assert account is not None
                result = set_urgency(app, session, case, urgency, account,
                                     tell_provider=account.id != case.provider_id)
    except TransitionError as exc:
        return back(request, f"/cases/{number}", "error", str(exc) + ".")
    if not allowed:
        raise HTTPException(403, "This case is not one of yours.")
    if result.refused:
        return back(request, f"/cases/{number}", "error",
                    "The case stays urgent: the dermatologist reviewing it decides that.")
    return back(request, f"/cases/{number}", "ok", f"{number} is {result.after}.")
