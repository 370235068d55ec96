"""The README's first case: `mailflow sample-photos` makes three photos that a case accepts as
its three required views, with nothing to fix."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

from mailflow.app import App
from mailflow.parse.views import REQUIRED_VIEWS
from tests.conftest import PASSWORD, RunningService
from tests.support.cases import CASES
from tests.support.cli import cli_json, run_cli
from tests.support.db import accepted_id, wait_final
from tests.support.mail import FULL_FORM, case_email, submit


def test_sample_photos_make_a_complete_case(
    service: RunningService, app: App, provider: str, tmp_path: Path
) -> None:
    out = tmp_path / "photos"
    written = run_cli(app.config, "sample-photos", "--out", str(out)).stdout.split()
    assert [Path(p).name for p in written] == ["distribution.jpg", "closeup.jpg", "oblique.jpg"]
    photos = [(Path(p).name, Path(p).read_bytes()) for p in written]
    msg: EmailMessage = case_email(provider, CASES, FULL_FORM, photos)
    code, text = submit(service.port, provider, PASSWORD, msg)
    assert code == 250, text
    row = wait_final(app, accepted_id(text))
    assert row.case_id is not None, row.outcome
    shown = cli_json(app.config, "cases", "show", _number(app, row.case_id))
    assert shown["state"] in ("submitted", "assigned")  # complete: nothing asked for
    assert [(i["filename"], i["view"], i["warnings"]) for i in shown["images"]] == [
        (name, view, []) for name, view in zip(
            ("distribution.jpg", "closeup.jpg", "oblique.jpg"), REQUIRED_VIEWS, strict=True)]


def _number(app: App, case_id: int) -> str:
    from mailflow.db.models import Case

    with app.sessions() as session:
        case = session.get(Case, case_id)
        assert case is not None
        return case.number
