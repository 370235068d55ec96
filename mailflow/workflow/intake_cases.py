"""New cases from cases@, and incomplete cases completed by the provider's reply."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow.app import App
from mailflow.db.models import Account, Case, CaseImage, utcnow
from mailflow.outbound.outbox import Email, queue
from mailflow.parse.analyze import StoredPhoto
from mailflow.parse.form import parse_case_form
from mailflow.parse.types import CaseForm
from mailflow.parse.views import REQUIRED_VIEWS, assign_views, missing_views, plain_view
from mailflow.sla.words import deadline_in_words, when_in_words, working_hours_in_words
from mailflow.workflow import cases
from mailflow.workflow.assign import try_assign
from mailflow.workflow.context import Inbound, Outcome
from mailflow.workflow.fields import REQUIRED_FIELDS, field_label, labelled_in_form_order

log = logging.getLogger(__name__)

VIEW_PREFIX = "view:"


def _best_form(inbound: Inbound) -> CaseForm:
    """The form from the new text, or from the whole text when that finds more (forwards)."""
    assert inbound.analysis.message is not None
    stripped = parse_case_form(inbound.analysis.body)
    whole = parse_case_form(inbound.analysis.message.text)
    return whole if len(whole.fields) > len(stripped.fields) else stripped


def _blocking_problems(form: CaseForm) -> list[str]:
    """Required fields given but unusable (a date of birth that is no date, consent 'no')."""
    keys = [key for key, _why in form.invalid if key in REQUIRED_FIELDS or key == "consent"]
    return list(dict.fromkeys(keys))


def _missing(form_missing: list[str], views: list[str]) -> list[str]:
    return form_missing + [VIEW_PREFIX + v for v in missing_views(views)]


def _caption(form: CaseForm | None, photo: StoredPhoto, number: int) -> str:
    if form is None:
        return photo.description
    return (
        form.photo_captions.get(photo.filename)
        or form.photo_captions.get(str(number))
        or photo.description
    )


def store_photos(
    inbound: Inbound,
    case: Case,
    photos: tuple[StoredPhoto, ...],
    form: CaseForm | None,
    first_position: int,
) -> list[CaseImage]:
    taken = [img.view for img in case.images]
    captions = [_caption(form, p, first_position + i) for i, p in enumerate(photos)]
    views = assign_views(
        [(p.filename, c) for p, c in zip(photos, captions, strict=True)], taken=taken
    )
    stored = []
    for offset, (photo, view, caption) in enumerate(zip(photos, views, captions, strict=True)):
        image = CaseImage(
            case_id=case.id,
            inbound_message_id=inbound.row.id,
            position=first_position + offset,
            view=view,
            filename=photo.filename,
            caption=caption,
            format=photo.format,
            width=photo.width,
            height=photo.height,
            original_sha=photo.original_sha,  # stored by the analysing process
            clean_sha=photo.clean_sha,
            clean_content_type=photo.clean_content_type,
            thumbnail_sha=photo.thumbnail_sha,
            review_sha=photo.review_sha,
            warnings=list(photo.warnings),
        )
        inbound.session.add(image)
        stored.append(image)
    inbound.session.flush()
    inbound.session.refresh(case, ["images"])
    return stored


def _ack(inbound: Inbound, case: Case, form: CaseForm | None, completed_now: bool) -> None:
    message = inbound.analysis.message
    assert message is not None and inbound.sender is not None
    missing = case.missing
    context: dict[str, Any] = {
        "fields": labelled_in_form_order(case.form),
        "photos": [
            {
                "number": img.position,
                "filename": img.filename,
                "view": plain_view(img.view),
                "warnings": img.warnings,
            }
            for img in case.images
        ],
        "refused": inbound.analysis.refused,
        "missing_fields": [field_label(m) for m in missing if not m.startswith(VIEW_PREFIX)],
        "missing_views": [
            plain_view(m[len(VIEW_PREFIX) :]) for m in missing if m.startswith(VIEW_PREFIX)
        ],
        "problems": [(field_label(k), why) for k, why in (form.invalid if form else ())],
        "unknown_lines": form.unknown_lines if form else (),
        "complete": not missing,
        "completed_now": completed_now,
        "required_views": REQUIRED_VIEWS,
        **expected_review(inbound.app, case),
    }
    queue(
        inbound.app,
        inbound.session,
        Email(
            kind="ack" if not missing else "ack_incomplete",
            template="ack",
            to=inbound.sender.email,
            context=context,
            case=case,
            recipient=inbound.sender,
            in_reply_to=message.message_id,
            references=message.references,
        ),
        cause_message_id=inbound.row.id,
    )


def expected_review(app: App, case: Case) -> dict[str, Any]:
    """What the acknowledgement promises: the deadline in words, after hours or not, and the
    red flags that suggest the case is urgent."""
    history = "\n".join(str(v) for v in case.form.values())
    out: dict[str, Any] = {
        "due_words": "",
        "after_hours": False,
        "target_minutes": None,
        "target_words": "",
        "start_words": "",
        "red_flags": app.sla.policies.red_flags_in(history) if case.urgency != "urgent" else [],
    }
    if case.sla_deadline is not None and case.sla_started_at is not None:
        now = utcnow()
        out["due_words"] = deadline_in_words(case.sla_deadline, now, app.sla.calendar.timezone)
        zone = app.sla.calendar.timezone
        out["after_hours"] = case.sla_started_at > now
        out["start_words"] = when_in_words(case.sla_started_at, now, zone)
        out["target_minutes"] = case.sla_target_minutes
        if case.sla_target_minutes:
            out["target_words"] = working_hours_in_words(case.sla_target_minutes)
    return out


def page_on_call(app: App, session: Session, case: Case) -> None:
    """An urgent case pages the on-call lead(s) at once, in hours or not."""
    if not app.sla.policies.for_urgency(case.urgency).page_on_call:
        return
    emails = [e.email for e in app.roster.leads]
    leads = (
        session.execute(select(Account).where(Account.email.in_(emails))).scalars()
        if emails
        else []
    )
    for lead in leads:
        queue(
            app,
            session,
            Email(
                kind="urgent_page",
                template="urgent_page",
                to=lead.email,
                case=case,
                recipient=lead,
                context=expected_review(app, case),
            ),
        )


def create_case(inbound: Inbound, _why: str) -> Outcome:
    provider = inbound.sender
    message = inbound.analysis.message
    assert provider is not None and message is not None
    form = _best_form(inbound)
    blocking = _blocking_problems(form)
    form_missing = list(dict.fromkeys([*form.missing, *blocking]))
    views_needed = _views_after(inbound.analysis.photos, form)
    missing = form_missing + [VIEW_PREFIX + v for v in views_needed]
    case = cases.open_case(
        inbound.session,
        provider=provider,
        form=dict(form.fields),
        labels=dict(form.labels),
        problems=list(form.invalid),
        missing=missing,
        urgency=form.urgency or "routine",
        subject=message.subject,
        actor=provider.email,
    )
    if form.fields.get("patient_name"):
        case.patient = cases.find_or_create_patient(
            inbound.session, inbound.app.keys, provider, dict(form.fields), form.sex
        )
    store_photos(inbound, case, inbound.analysis.photos, form, first_position=1)
    _ack(inbound, case, form, completed_now=False)
    if case.state == cases.S.SUBMITTED:
        page_on_call(inbound.app, inbound.session, case)
        try_assign(inbound.app, inbound.session, case)
    log.info("case %s opened (%s)", case.number, case.state)
    return Outcome.done("new-case", f"new case {case.number} ({case.state})", case.id)


def _views_after(photos: tuple[StoredPhoto, ...], form: CaseForm) -> list[str]:
    """The required views these photos leave missing."""
    captions = [_caption(form, p, i + 1) for i, p in enumerate(photos)]
    return missing_views(
        assign_views([(p.filename, c) for p, c in zip(photos, captions, strict=True)])
    )


def complete_case(inbound: Inbound, case: Case) -> Outcome:
    """The provider's reply to an incomplete case: merge fields, add photos, re-check."""
    provider = inbound.sender
    assert provider is not None
    form = parse_case_form(inbound.analysis.body)
    supplied = {k: v for k, v in form.fields.items() if v}
    merged = {**case.form, **supplied}
    case.form = merged
    case.form_labels = {**case.form_labels, **form.labels}
    # Problems with earlier values stand until the provider supplies those fields again.
    problems = [(k, why) for k, why in case.form_problems if k not in supplied]
    problems += list(form.invalid)
    case.form_problems = [list(p) for p in problems]
    if case.patient is None and merged.get("patient_name"):
        case.patient = cases.find_or_create_patient(
            inbound.session, inbound.app.keys, provider, merged, form.sex
        )
    first = max((img.position for img in case.images), default=0) + 1
    store_photos(inbound, case, inbound.analysis.photos, form, first_position=first)
    blocking = [k for k, _why in problems if k in REQUIRED_FIELDS or k == "consent"]
    form_missing = [k for k in REQUIRED_FIELDS if not merged.get(k)]
    form_missing = list(dict.fromkeys([*form_missing, *blocking]))
    missing = _missing(form_missing, [img.view for img in case.images])
    if inbound.analysis.body.strip():
        cases.add_note(
            inbound.session,
            case,
            author=provider,
            kind="completion",
            body=inbound.analysis.body,
            inbound_message_id=inbound.row.id,
        )
    was_incomplete = bool(case.missing)
    cases.update_missing(inbound.session, case, missing, actor=provider.email)
    _ack(inbound, case, form, completed_now=was_incomplete and not missing)
    if case.state == cases.S.SUBMITTED and was_incomplete:
        page_on_call(inbound.app, inbound.session, case)
        try_assign(inbound.app, inbound.session, case)
    return Outcome.done("case-reply", f"case {case.number} updated ({case.state})", case.id)
