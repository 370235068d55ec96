"""Issue #11 item 10: everything held about one patient, as a zip (the right of access)."""

from __future__ import annotations

import io
import json
import zipfile

from PIL import Image
from pypdf import PdfReader
from sqlalchemy import select

from mailflow.app import App
from mailflow.config import Config
from mailflow.db.models import AuditEvent
from tests.support.cli import run_cli
from tests.support.closed import closed_case
from tests.support.mail import FULL_FORM

OTHER_FORM = (FULL_FORM.replace("Jane Testpatient", "Zebedee Otherpatient")
              .replace("1961-03-04", "1972-11-12").replace("MRN-0001", "MRN-0777"))


def pdf_text(data: bytes) -> str:
    return " ".join(" ".join(p.extract_text().split()) for p in PdfReader(io.BytesIO(data)).pages)


def test_the_export_holds_both_cases_of_the_patient_and_nothing_of_another(
    app: App, config: Config, provider: str, dermatologists: tuple[str, str],
) -> None:
    derm = dermatologists[0]
    first = closed_case(app, provider, derm, (1, 2, 3))
    other = closed_case(app, provider, derm, (7, 8, 9), OTHER_FORM)
    second = closed_case(app, provider, derm, (4, 5, 6))
    out = config.base_dir / "jane.zip"

    said = run_cli(config, "patients", "export", "--case", second, "--out", str(out)).stdout

    assert "2 cases" in said and out.stat().st_mode & 0o077 == 0
    with zipfile.ZipFile(out) as zf:
        files = {name: zf.read(name) for name in zf.namelist()}
    assert "README.txt" in files and b"photos" in files["README.txt"]
    assert json.loads(files["patient.json"])["name"] == "Jane Testpatient"
    for number in (first, second):
        report = pdf_text(files[f"cases/{number}/consult-report-v1.pdf"])
        assert number in report and "Nummular eczema" in report and "Testpatient" in report
        case = json.loads(files[f"cases/{number}/case.json"])
        assert case["case"] == number and "Jane Testpatient" in case["fields"].values()
        shots = [n for n in files if n.startswith(f"cases/{number}/photos/")]
        assert len(shots) == 3
        for name in shots:  # the photos were sent with camera and GPS data
            image = Image.open(io.BytesIO(files[name]))
            assert not image.getexif(), f"{name} still carries EXIF"
    assert not any(n.startswith(f"cases/{other}") for n in files)
    for name, data in files.items():
        text = pdf_text(data) if name.endswith(".pdf") else data.decode("latin-1")
        assert "Otherpatient" not in text and other not in text and "MRN-0777" not in text, name
    with app.sessions() as session:
        exported = session.execute(select(AuditEvent.entity_id).where(
            AuditEvent.action == "patient.exported")).scalars().all()
    assert sorted(exported) == sorted([first, second])


def test_an_unknown_case_is_refused(app: App, config: Config) -> None:
    result = run_cli(config, "patients", "export", "--case", "DERM-2026-999999",
                     "--out", str(config.base_dir / "x.zip"), check=False)
    assert result.returncode == 1 and "no case DERM-2026-999999" in result.stderr
    assert not (config.base_dir / "x.zip").exists()
