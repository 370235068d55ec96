"""Issue #14 item 2: the report in the EHR. A case through the real SMTP door, a comment, the
dermatologist's answer with an ICD-10 line (one code, one that is no code), then the consult as
a FHIR R4 document Bundle from the real `mailflow cases fhir` and from GET /api/cases/{n}/fhir:
read back with fhir.resources (which validates it), every reference resolved inside it."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from PIL import Image
from sqlalchemy import select

from mailflow.app import App
from mailflow.config import Config
from mailflow.db.models import Account, AuditEvent, Case
from mailflow.db.session import transaction
from tests.support.cases import CASE_NUMBER, CASES
from tests.support.cli import run_cli
from tests.support.db import wait_final
from tests.support.images import gps_exif, skin_photo
from tests.support.mail import FULL_FORM, case_email, reply_to, wait_until
from tests.support.review import ANSWER, pdf_of, send
from tests.support.sink import RelaySink
from tests.support.web import people, web  # noqa: F401 (fixtures)

ICD10_CM = "http://hl7.org/fhir/sid/icd-10-cm"
NPI = "http://hl7.org/fhir/sid/us-npi"
NPIS = {"dr.family@clinic.test": "1234567893", "derm.one@derm.localhost": "1245319599"}


def references(node: Any) -> Iterator[str]:
    """Every Reference.reference anywhere in the JSON."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def by_type(bundle: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def answered_case(service: Any, app: App, sink: RelaySink, provider: str, derm: str
                  ) -> tuple[str, bytes]:
    """A case with photos that carry GPS EXIF, a comment and the answer; (number, its PDF)."""
    with transaction(app.sessions) as session:
        for email, npi in NPIS.items():
            account = session.execute(select(Account).where(Account.email == email)).scalar_one()
            account.npi = npi
    photos = [(f"photo{i}.jpg", skin_photo(seed=i, exif=gps_exif())) for i in (1, 2, 3)]
    send(service, provider, case_email(provider, CASES, FULL_FORM, photos))
    ack = sink.wait_for(provider)[0]
    number = CASE_NUMBER.search(str(ack.message["Subject"])).group(0)  # type: ignore[union-attr]
    msg, address = reply_to(ack, provider, "She started a new laundry detergent last month.")
    wait_final(app, send(service, provider, msg, address))
    notification = sink.wait_for(derm)[0]
    msg, address = reply_to(notification, derm, ANSWER + "ICD-10: L30.0, L3x9\n")
    wait_final(app, send(service, derm, msg, address))
    report = wait_until(
        lambda: next((d for d in sink.to(provider)
                      if "consult report" in str(d.message["Subject"])), None),
        30.0, "the consult report to the provider")
    return number, pdf_of(report)


def check_document(text: str, pdf: bytes) -> dict[str, Any]:
    Bundle.model_validate_json(text)  # fhir.resources parses and validates it as R4B
    bundle = json.loads(text)
    assert bundle["type"] == "document"
    assert bundle["entry"][0]["resource"]["resourceType"] == "Composition"
    urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(set(urls)) == len(urls) and all(u.startswith("urn:uuid:") for u in urls)
    refs = set(references(bundle))
    assert refs and refs <= set(urls), refs - set(urls)

    assert {NPIS["dr.family@clinic.test"], NPIS["derm.one@derm.localhost"]} <= {
        i["value"] for p in by_type(bundle, "Practitioner") for i in p.get("identifier", [])
        if i["system"] == NPI}
    assert len(by_type(bundle, "Patient")) == 1 and len(by_type(bundle, "ServiceRequest")) == 1
    media = by_type(bundle, "Media")
    assert len(media) == 3
    for m in media:
        data = base64.b64decode(m["content"]["data"])
        assert b"TestCam" not in data and not Image.open(io.BytesIO(data)).getexif()
    [report] = by_type(bundle, "DiagnosticReport")
    assert base64.b64decode(report["presentedForm"][0]["data"]) == pdf
    assert "Nummular eczema" in report["conclusion"]
    assert {"coding": [{"system": ICD10_CM, "code": "L30.0"}]} in report["conclusionCode"]
    assert {"text": "L3x9"} in report["conclusionCode"]  # no code: kept as written
    assert not any(c.get("code") == "L3x9" for cc in report["conclusionCode"]
                   for c in cc.get("coding", []))
    talk = [c["payload"][0]["contentString"] for c in by_type(bundle, "Communication")]
    assert any("laundry detergent" in t for t in talk)
    return bundle


def exports(app: App, number: str) -> list[AuditEvent]:
    with app.sessions() as session:
        return list(session.execute(
            select(AuditEvent).join(Case, Case.id == AuditEvent.case_id)
            .where(Case.number == number, AuditEvent.action == "case.fhir_exported")
        ).scalars())


def test_the_consult_goes_to_the_ehr_as_one_fhir_document(
    service: Any, app: App, sink: RelaySink, config: Config, tmp_path: Path,
    people: dict[str, str], web: Callable[[str | None], TestClient],  # noqa: F811
) -> None:
    number, pdf = answered_case(service, app, sink, people["provider"], people["derm"])

    out = tmp_path / "bundle.json"
    run_cli(config, "cases", "fhir", number, "--out", str(out))
    check_document(out.read_text(), pdf)
    run_cli(config, "cases", "report", number, "--out", str(tmp_path / "report.pdf"))
    assert (tmp_path / "report.pdf").read_bytes() == pdf
    assert [e.detail for e in exports(app, number)] == [{"via": "cli"}]

    for who in ("provider", "derm", "admin"):
        response = web(people[who]).get(f"/api/cases/{number}/fhir")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/fhir+json")
        check_document(response.text, pdf)
    assert [(e.actor, e.detail) for e in exports(app, number)][1:] == [
        (people[w], {"via": "api"}) for w in ("provider", "derm", "admin")]

    for who in ("other", "derm2"):
        assert web(people[who]).get(f"/api/cases/{number}/fhir").status_code == 403
    with app.sessions() as session:
        refusals = session.execute(
            select(AuditEvent.actor, AuditEvent.detail)
            .where(AuditEvent.action == "case.access_denied")).all()
    assert sorted(a for a, d in refusals if d["what"] == "fhir") == sorted(
        [people["other"], people["derm2"]])
    assert len(exports(app, number)) == 4  # the refusals exported nothing
    assert web(None).get(f"/api/cases/{number}/fhir").status_code == 401


def test_no_document_before_the_report(
    app: App, config: Config, tmp_path: Path, people: dict[str, str],  # noqa: F811
    web: Callable[[str | None], TestClient],  # noqa: F811
) -> None:
    from tests.support.cases import send_case

    number = send_case(app, people["provider"])
    failed = run_cli(config, "cases", "fhir", number, "--out", str(tmp_path / "b.json"),
                     check=False)
    assert failed.returncode != 0 and "no consult report yet" in failed.stderr
    assert not (tmp_path / "b.json").exists()
    assert web(people["provider"]).get(f"/api/cases/{number}/fhir").status_code == 409
    assert exports(app, number) == []
