"""A follow-up case opened by replying: the provider answers an old case's email (its report,
typically) with new photos and "New case: yes". The reply becomes a new case of the same
patient; the old case is left exactly as it was (no note, no state change, no clock).

The new case takes the patient's details and the body location from the old case unless the
reply gives its own; everything else is the reply's (what the patient has now), so a reply
missing a required field gets the usual "more needed" acknowledgement.

The old case may itself be incomplete (the reply answers its "more needed" email): it stays
so, and the new case's acknowledgement reminds the provider that it still waits for them."""

from __future__ import annotations

from dataclasses import replace

from mailflow.db.models import CaseState
from mailflow.parse.follow_up import without_new_case_line
from mailflow.parse.form import REQUIRED, parse_case_form
from mailflow.workflow.context import Outcome
from mailflow.workflow.intake_cases import open_from
from mailflow.workflow.replies import Thread

ROUTE = "follow-up-case"
# What a follow-up keeps from the case it follows: who the patient is and where the skin is.
# Consent to photos is not carried over: these are new photos.
CARRIED = ("patient_name", "date_of_birth", "sex", "mrn", "location")


def open_follow_up(t: Thread, _why: str) -> Outcome:
    earlier = t.case
    form = parse_case_form(without_new_case_line(t.body))
    # a value the old case still questions (a date of birth we could not read) is not
    # carried: the new case would take it as good; it is asked for again instead
    questioned = {str(p[0]) for p in earlier.form_problems}
    carried = {k: str(earlier.form[k]) for k in CARRIED
               if earlier.form.get(k) and k not in questioned and not form.fields.get(k)}
    fields = {**carried, **{k: v for k, v in form.fields.items() if v}}
    labels = {**{k: str(earlier.form_labels.get(k, k)) for k in carried}, **form.labels}
    form = replace(form, fields=fields, labels=labels,
                   missing=tuple(k for k in REQUIRED if not fields.get(k)))
    waiting = earlier.number if earlier.state == CaseState.INCOMPLETE else None
    outcome = open_from(t.m, form, route=ROUTE, fresh_thread=True, earlier_waiting=waiting)
    return replace(outcome, text=f"{outcome.text}, a follow-up of {earlier.number}")
