"""All the photos of one message together are bounded in decoded pixels ([intake]
max_pixels_per_message): photos past it are refused by name in the acknowledgement, and the
rest of the case goes ahead (issue #11 item 6; twelve 59 MP PNGs drove a worker to 608 MB)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from mailflow.app import App, initialise
from mailflow.config import Config
from mailflow.db.models import MessageStatus
from tests.conftest import PASSWORD, RunningService, make_config
from tests.support.cases import CASE_NUMBER, CASES
from tests.support.cli import cli_json
from tests.support.db import accepted_id, wait_final
from tests.support.images import skin_photo
from tests.support.mail import FULL_FORM, case_email, submit
from tests.support.sink import RelaySink

BUDGET = 30_000_000
LARGE = (4000, 3000)  # 12 MP: two fit in the budget, a third does not


def solid_png(size: tuple[int, int], shade: int) -> bytes:
    """A large PNG made cheaply: one colour compresses to almost nothing."""
    out = io.BytesIO()
    Image.new("RGB", size, (200, 150, shade)).save(out, "PNG", compress_level=1)
    return out.getvalue()


@pytest.fixture
def config(tmp_path: Path, db_url: str, sink: RelaySink) -> Config:
    cfg = make_config(tmp_path, db_url, intake={"max_pixels_per_message": BUDGET},
                      smtp={"rate_per_minute": 1000}, outbound={
                          "relay_host": "127.0.0.1", "relay_port": sink.port})
    initialise(cfg)
    return cfg


def test_photos_past_the_message_budget_are_refused_by_name_and_the_case_goes_ahead(
    service: RunningService, app: App, sink: RelaySink, provider: str,
) -> None:
    large = [(f"large_{i}.png", solid_png(LARGE, 100 + i)) for i in range(1, 5)]
    small = ("closeup_front.jpg", skin_photo(seed=7))  # after them, and still fits
    msg = case_email(provider, CASES, FULL_FORM)
    for name, data in [*large, small]:
        kind = "png" if name.endswith(".png") else "jpeg"
        msg.add_attachment(data, maintype="image", subtype=kind, filename=name)
    code, text = submit(service.port, provider, PASSWORD, msg)
    assert code == 250, text
    assert wait_final(app, accepted_id(text)).status == MessageStatus.PROCESSED

    ack = sink.wait_for(provider)[0]
    refused = ack.text.split("NOT ACCEPTED", 1)[1]
    for name in ("large_3.png", "large_4.png"):
        assert f"{name} was not processed" in refused, refused
        assert "send it in a reply to this email" in refused
    assert "30 megapixels" in refused
    assert "large_1.png" not in refused and "large_2.png" not in refused
    assert "closeup_front.jpg" not in refused
    number = CASE_NUMBER.search(str(ack.message["Subject"])).group(0)
    shown = cli_json(app.config, "cases", "show", number)
    assert [img["filename"] for img in shown["images"]] == [
        "large_1.png", "large_2.png", "closeup_front.jpg"]
    assert shown["fields"]["patient_name"] == "Jane Testpatient"


def test_the_default_budget_is_150_megapixels() -> None:
    assert Config().intake.max_pixels_per_message == 150_000_000
