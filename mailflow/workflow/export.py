"""Everything held about one patient, as a zip file (the patient's right of access).

A patient record belongs to the provider who referred them (patients are looked up by a keyed
hash of provider, name and date of birth, workflow/cases.py), so the export covers that
record's cases and nothing else: every query is by the patient's or one of its cases' ids.
Inside: README.txt, the patient's details, and per case its fields, conversation, consults,
the consult report PDFs as issued and the photos as cleaned (EXIF and GPS removed). Raw
emails are not included (decisions.md). Writing the file is a PHI read: audited per case.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow import audit
from mailflow.app import App
from mailflow.db.models import Account, Case, CaseImage, CaseNote, Consult, Patient, utcnow
from mailflow.db.session import transaction
from mailflow.parse.fields import field_label
from mailflow.workflow.numbers import find_case


class ExportError(Exception):
    pass


@dataclass
class Export:
    """What went into the zip: for the command's summary and the audit (no PHI)."""

    cases: list[str] = field(default_factory=list)
    reports: int = 0
    photos: int = 0
    photos_purged: int = 0
    files: dict[str, bytes] = field(default_factory=dict)


def export_patient_of_case(app: App, number: str, out: Path, actor: str) -> Export:
    """Write the zip for the patient of case `number` (all that patient's cases)."""
    with transaction(app.sessions) as session:
        case = find_case(session, number)
        if case is None:
            raise ExportError(f"no case {number}")
        cases = _cases_of(session, case)
        export = Export()
        export.files["patient.json"] = _json(_patient(case.patient))
        for each in cases:
            _add_case(app, session, each, export)
        export.files["README.txt"] = _readme(case.patient, export).encode()
        for each in cases:
            audit.case_event(session, each, "patient.exported", actor=actor,
                             detail={"via": "cli", "cases": len(cases),
                                     "requested_for": case.number})
        _write_zip(out, export.files)
    return export


def _cases_of(session: Session, case: Case) -> list[Case]:
    if case.patient_id is None:  # no patient details were given: the case alone
        return [case]
    return list(session.execute(
        select(Case).where(Case.patient_id == case.patient_id).order_by(Case.id)).scalars())


def _patient(patient: Patient | None) -> dict[str, Any]:
    if patient is None:
        return {"note": "The case gave no patient details."}
    return {"name": patient.name, "date_of_birth": patient.date_of_birth, "sex": patient.sex,
            "chart_mrn": patient.mrn, "first_seen": patient.created_at}


def _add_case(app: App, session: Session, case: Case, export: Export) -> None:
    folder = f"cases/{case.number}"
    export.cases.append(case.number)
    export.files[f"{folder}/case.json"] = _json({
        "case": case.number, "state": case.state, "urgency": case.urgency,
        "referring_provider": {"name": case.provider.name, "practice": case.provider.practice,
                               "email": case.provider.email},
        "received": case.created_at, "submitted": case.submitted_at,
        "reviewed": case.reviewed_at, "closed": case.closed_at,
        "fields": {field_label(k): v for k, v in case.form.items()},
        "problems_found": [{"field": field_label(k), "why": why} for k, why in case.form_problems],
        "still_missing": list(case.missing),
    })
    export.files[f"{folder}/conversation.txt"] = _conversation(session, case).encode()
    consults = session.execute(
        select(Consult, Account).join(Account, Account.id == Consult.dermatologist_id)
        .where(Consult.case_id == case.id).order_by(Consult.version)).all()
    export.files[f"{folder}/consults.json"] = _json([
        {"version": c.version, "kind": "consult" if c.version == 1 else "addendum",
         "dermatologist": derm.name, "credentials": derm.credentials, "at": c.created_at,
         "answer": {k: v for k, v in c.answer.items() if v}} for c, derm in consults])
    for consult, _derm in consults:
        if consult.pdf_sha:
            export.files[f"{folder}/consult-report-v{consult.version}.pdf"] = app.blobs.get(
                consult.pdf_sha)
            export.reports += 1
    for image in case.images:
        _add_photo(app, image, folder, export)


def _add_photo(app: App, image: CaseImage, folder: str, export: Export) -> None:
    if image.purged_at is not None:
        export.photos_purged += 1
        return
    ext = "png" if image.clean_content_type == "image/png" else "jpg"
    view = re.sub(r"[^a-z0-9]+", "-", image.view.lower()).strip("-")
    # the cleaned copy: decoded and re-encoded, EXIF and GPS removed (parse/images.py)
    export.files[f"{folder}/photos/{image.position}-{view}.{ext}"] = app.blobs.get(
        image.clean_sha)
    export.photos += 1


def _conversation(session: Session, case: Case) -> str:
    notes = session.execute(
        select(CaseNote, Account).outerjoin(Account, Account.id == CaseNote.author_id)
        .where(CaseNote.case_id == case.id).order_by(CaseNote.created_at, CaseNote.id)).all()
    if not notes:
        return "No messages on this case besides the case itself and the consults.\n"
    blocks = []
    for note, author in notes:
        who = f"{author.name} ({author.role})" if author else "mailflow"
        blocks.append(f"{_when(note.created_at)}  {note.kind} from {who}\n\n{note.body.strip()}\n")
    return ("\n" + "-" * 60 + "\n\n").join(blocks)


def _readme(patient: Patient | None, export: Export) -> str:
    lines = [
        "Everything this consult service holds about one patient",
        "",
        f"Made on {_when(utcnow())}. Cases: {', '.join(export.cases)}.",
        "",
        "patient.json - the patient's details as the referring provider gave them.",
        "cases/<case number>/ - one folder per case:",
        "  case.json - the case's details: the history fields as understood, dates, state.",
        "  conversation.txt - the messages on the case (questions, answers, comments).",
        "  consults.json - the dermatologist's consult and any addenda.",
        "  consult-report-v<N>.pdf - each consult report as it was issued.",
        "  photos/ - the photos, with their camera data (EXIF, location) removed.",
        "",
        f"{export.reports} consult reports and {export.photos} photos are included.",
    ]
    if export.photos_purged:
        lines += ["", f"{export.photos_purged} photos are no longer held: they were deleted "
                  "when their retention time ended. The consult reports show the photos as "
                  "they were reviewed."]
    lines += ["", "A report may be protected with the referring practice's report password.",
              "The original emails are not part of this file; they are kept for the retention "
              "time and can be provided on request."]
    return "\n".join(lines) + "\n"


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def _json(value: Any) -> bytes:
    def plain(v: Any) -> Any:
        return v.isoformat(timespec="seconds") if isinstance(v, datetime) else str(v)
    return json.dumps(value, indent=2, ensure_ascii=False, default=plain).encode()


def _write_zip(out: Path, files: dict[str, bytes]) -> None:
    """Readable by the owner only (PHI); written whole, then moved into place."""
    tmp = out.with_name(f".{out.name}.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in sorted(files, key=lambda n: (n != "README.txt", n)):
                zf.writestr(name, files[name])
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
