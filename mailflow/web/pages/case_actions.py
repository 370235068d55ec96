"""What staff and the two sides do on a case's page: reassign, resend the report, comment, close."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import Response

from mailflow.db.models import Account
from mailflow.db.session import transaction
from mailflow.web import views
from mailflow.web.deps import admin_post, posted_by, web_app
from mailflow.web.pages.base import back, denied, render_page
from mailflow.web.security import WebUser
from mailflow.workflow import cases as case_flow
from mailflow.workflow.assign import DeclinedBefore, assign_by_hand
from mailflow.workflow.intake_cases import patient_fields_from_reply
from mailflow.workflow.transitions import BY_THE_TEAM, close_case
from mailflow.workflow.urgency import CHANGEABLE, asked_in, set_urgency

router = APIRouter(include_in_schema=False)


@router.post("/cases/{number}/reassign")
def reassign(request: Request, number: str, user: Annotated[WebUser, Depends(admin_post)],
             to: Annotated[str, Form()] = "", confirm: Annotated[str, Form()] = "") -> Response:
    """To someone who declined the case: a confirmation step with their reason first."""
    app = web_app(request)
    try:
        with transaction(app.sessions) as session:
            case = views.find_case(session, number)
            if case is None:
                raise HTTPException(404)
            derm = assign_by_hand(app, session, case, to, actor=user.email,
                                  force=confirm == "yes")
            number, who = case.number, derm.name
    except DeclinedBefore as exc:
        return render_page(request, "confirm_assign.html.j2", user, number=number.upper(),
                           to=exc.email, derm_name=exc.name, decline=exc.decline,
                           nav="case")
    except case_flow.TransitionError as exc:
        return back(request, f"/cases/{number}", "error", str(exc))
    again = " (who had declined it)" if confirm == "yes" else ""
    return back(request, f"/cases/{number}", "ok", f"{number} is assigned to {who}{again}; "
                                                     "the case was emailed to them.")


@router.post("/cases/{number}/resend-report")
def resend(request: Request, number: str,
           user: Annotated[WebUser, Depends(admin_post)]) -> Response:
    from mailflow.workflow.consult_report import resend_report

    app = web_app(request)
    with transaction(app.sessions) as session:
        case = views.find_case(session, number)
        if case is None:
            raise HTTPException(404, "No such case.")
        try:
            resend_report(app, session, case, actor=user.email)
        except ValueError as exc:
            return back(request, f"/cases/{case.number}", "error", str(exc) + ".")
        to = case.provider.email
    return back(request, f"/cases/{number.upper()}", "ok", f"The report was sent again to {to}.")


@router.post("/cases/{number}/comment")
def add_comment(request: Request, number: str, user: Annotated[WebUser, Depends(posted_by)],
                body: Annotated[str, Form()] = "") -> Response:
    """The referring provider or the assigned dermatologist writes on the thread."""
    from mailflow.workflow.review import comment

    app = web_app(request)
    text_ = body.strip()[:20000]
    with transaction(app.sessions) as session:
        case = views.find_case(session, number, lock=True)
        if case is None:
            raise HTTPException(404, "No such case.")
        author = session.get(Account, user.id)
        allowed = author is not None and (
            case.provider_id == author.id or case.assignee_id == author.id)
        if allowed and text_:
            assert author is not None
            # "Urgency: urgent" and patient details count here as they do by email
            patient_fields_from_reply(session, app.keys, case, author, text_)
            wanted = asked_in(text_)
            if wanted and case.state in CHANGEABLE:
                set_urgency(app, session, case, wanted, author)
            comment(app, session, case, author, text_)
    if not allowed:
        with transaction(app.sessions) as session:  # the refusal is kept: its own transaction
            denied(user, session, case, "comment")
        raise HTTPException(403, "Only the referring provider and the assigned dermatologist "
                                 "write on a case.")
    if not text_:
        return back(request, f"/cases/{number.upper()}", "error", "The comment is empty.")
    return back(request, f"/cases/{number.upper()}", "ok",
                "Your comment is added and was emailed to the other side.")


@router.post("/cases/{number}/close")
def close(request: Request, number: str,
          user: Annotated[WebUser, Depends(admin_post)]) -> Response:
    app = web_app(request)
    try:
        with transaction(app.sessions) as session:
            case = views.find_case(session, number)
            if case is None:
                raise HTTPException(404)
            # the transition tells the provider and the dermatologist, as from any door
            close_case(app, session, case, by=session.get(Account, user.id), actor=user.email,
                       why=BY_THE_TEAM)
            number = case.number
    except case_flow.TransitionError as exc:
        return back(request, f"/cases/{number}", "error", str(exc))
    return back(request, f"/cases/{number}", "ok", f"{number} is closed.")
