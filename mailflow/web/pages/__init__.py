"""The HTML pages, one module per screen; `router` wires them all into the web app.

sign-in (`signin`), the overview (`overview`), a case (`case`), its photos and PDF
(`case_files`), the actions on it (`case_actions`), merging patient records (`patients`), the
quarantine, the outbox, and the unauthenticated /healthz and /metrics (`health`); the phone
page for a case's photos (`photos`, its uploads in `uploads`) and the portal's "Start a new
case" (`new_case`). `base` holds what every screen uses.
"""

from __future__ import annotations

from fastapi import APIRouter

from mailflow.web.pages import (
    case,
    case_actions,
    case_files,
    health,
    new_case,
    outbox,
    overview,
    patients,
    photos,
    quarantine,
    signin,
    uploads,
)
from mailflow.web.pages.base import back, denied, render_page
from mailflow.web.pages.signin import login_url

# back, denied, render_page and login_url stay importable from here for code written before the
# split; new code imports them from `base` and `signin`.
__all__ = ["back", "denied", "login_url", "render_page", "router"]

SCREENS = (signin, overview, case, case_files, case_actions, patients, quarantine, outbox,
           health, photos, uploads, new_case)

router = APIRouter(include_in_schema=False)
for screen in SCREENS:
    router.include_router(screen.router)
