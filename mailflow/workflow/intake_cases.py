"""New cases from cases@, and incomplete cases completed by the provider's reply."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow.app import App
from mailflow.crypto.keys import Keyring
from mailflow.db.models import Account, Case, CaseImage, utcnow
from mailflow.outbound.outbox import Email, queue
from mailflow.parse.analyze import StoredPhoto
from mailflow.parse.fields import REQUIRED_FIELDS, field_label, labelled_in_form_order
from mailflow.parse.form import parse_case_form, sex_of
from mailflow.parse.keyvalue import normalize_label
from mailflow.parse.types import CaseForm
from mailflow.parse.views import REQUIRED_VIEWS, assign_views, missing_views, plain_view
from mailflow.trust import photo_links
from mailflow.workflow import cases
from mailflow.workflow.assign import try_assign
from mailflow.workflow.context import Inbound, Outcome
from mailflow.workflow.urgency import (
    UrgencyResult,
    asked_in,
    expected_review,
    page_on_call,
    set_urgency,
)

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


def photo_link(app: App, case: Case, provider: Account) -> str:
    """The acknowledgement's link to the phone page (web/photos.py) for this case and provider:
    signed, and it expires; opening it still takes the provider's password or session."""
    token = photo_links.make(app.keys.token_key, case.number, provider.id, utcnow(),
                             timedelta(days=app.config.uploads.link_days))
    return f"{app.config.web_url}/photos/{token}"


def _days(days: float) -> str:
    return f"{days:g} day" + ("" if days == 1 else "s")


def _ack(inbound: Inbound, case: Case, form: CaseForm | None, completed_now: bool,
         urgency: UrgencyResult | None = None, fresh_thread: bool = False,
         earlier_waiting: str | None = None) -> None:
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
        "no_consent": case.form.get("consent") == "no",
        "urgency_kept": bool(urgency and urgency.refused),
        "photos_url": photo_link(inbound.app, case, inbound.sender),
        "photos_link_days": _days(inbound.app.config.uploads.link_days),
        "same_patient": _same_patient(inbound.session, case),
        "earlier_waiting": earlier_waiting,
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
            references=[message.message_id] if fresh_thread else message.references,
        ),
        cause_message_id=inbound.row.id,
    )


def _same_patient(session: Session, case: Case) -> list[str]:
    """The provider's other cases on this case's patient record, newest first: the
    acknowledgement names them (case numbers only, no more than the provider sent)."""
    if case.patient_id is None:
        return []
    return list(session.execute(
        select(Case.number).where(Case.patient_id == case.patient_id, Case.id != case.id)
        .order_by(Case.id.desc())
    ).scalars())


def create_case(inbound: Inbound, _why: str) -> Outcome:
    return open_from(inbound, _best_form(inbound), route="new-case")


def open_from(inbound: Inbound, form: CaseForm, route: str, fresh_thread: bool = False,
              earlier_waiting: str | None = None) -> Outcome:
    """A new case from this form and the message's photos: the patient's record found (or
    made), the photos kept, the provider acknowledged, the case offered for review.
    `fresh_thread`: the acknowledgement does not carry the message's References (a reply
    on another case's thread starting this one must not tie the new thread to the old).
    `earlier_waiting`: the number of the incomplete case this one was opened from, which the
    acknowledgement says still waits for what was asked."""
    provider = inbound.sender
    message = inbound.analysis.message
    assert provider is not None and message is not None
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
    _record_patient(inbound, case)
    store_photos(inbound, case, inbound.analysis.photos, form, first_position=1)
    _ack(inbound, case, form, completed_now=False, fresh_thread=fresh_thread,
         earlier_waiting=earlier_waiting)
    if case.state == cases.S.SUBMITTED:
        page_on_call(inbound.app, inbound.session, case)
        try_assign(inbound.app, inbound.session, case)
    log.info("case %s opened (%s)", case.number, case.state)
    return Outcome.done(route, f"new case {case.number} ({case.state})", case.id)


def _record_patient(inbound: Inbound, case: Case) -> None:
    assert inbound.sender is not None
    record_patient_of(inbound.session, inbound.app.keys, case, inbound.sender.email)


def record_patient_of(session: Session, keys: Keyring, case: Case, actor: str) -> None:
    """The patient fields the case holds now onto its patient record, but not a value still
    in question (a date of birth we could not read)."""
    pending = {key for key, _why in case.form_problems}
    fields = {k: v for k, v in case.form.items() if k in cases.PATIENT_FIELDS and k not in pending}
    cases.record_patient(session, keys, case, fields, sex_of(fields.get("sex", "")), actor)


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
    # the Urgency line is not merged: set_urgency decides it (a provider cannot lower it)
    supplied = {k: v for k, v in form.fields.items() if v and k != "urgency"}
    merged = {**case.form, **supplied}
    case.form = merged
    case.form_labels = {**case.form_labels, **form.labels}
    # Problems with earlier values stand until the provider supplies those fields again.
    problems = [(k, why) for k, why in case.form_problems if k not in supplied]
    problems += list(form.invalid)
    case.form_problems = [list(p) for p in problems]
    _record_patient(inbound, case)
    wanted = asked_in(inbound.analysis.body)
    urgency = (set_urgency(inbound.app, inbound.session, case, wanted, provider,
                           tell_provider=False, cause=inbound.row.id) if wanted else None)
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
    _ack(inbound, case, form, completed_now=was_incomplete and not missing, urgency=urgency)
    if case.state == cases.S.SUBMITTED and was_incomplete:
        page_on_call(inbound.app, inbound.session, case)
        try_assign(inbound.app, inbound.session, case)
    return Outcome.done("completion", f"case {case.number} updated ({case.state})", case.id)


# Labels too loose to change a recorded patient from a comment ("Patient: much better").
_LOOSE_LABELS = frozenset({"patient", "pt", "name", "born", "record", "chart"})


def patient_fields_from_reply(
    session: Session, keys: Keyring, case: Case, author: Account, text: str
) -> None:
    """The provider's later replies (and web comments) may correct or add the patient's name,
    date of birth, sex or MRN: under its own label and readable, each updates the case and its
    patient."""
    if author.id != case.provider_id:
        return
    form = parse_case_form(text)
    invalid = {key for key, _why in form.invalid}
    given = {
        key: value for key, value in form.fields.items()
        if key in cases.PATIENT_FIELDS and value and key not in invalid
        and normalize_label(form.labels.get(key, "")) not in _LOOSE_LABELS
    }
    if not given:
        return
    case.form = {**case.form, **given}
    case.form_labels = {**case.form_labels, **{k: form.labels[k] for k in given}}
    case.form_problems = [list(p) for p in case.form_problems if p[0] not in given]
    record_patient_of(session, keys, case, author.email)
