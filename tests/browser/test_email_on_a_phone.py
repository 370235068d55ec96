"""Issue #9 item 7: the HTML acknowledgement and help email read well on a 375 px phone.

The emails come from the running service (a case and a help request over SMTP, the replies
taken from the relay sink); Chromium shows each HTML part at 375 px wide, the screenshots go
to test-artifacts/screenshots/, and nothing may need sideways scrolling.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.conftest import SHOTS
from tests.conftest import PASSWORD, RunningService
from tests.support.cases import CASES
from tests.support.images import skin_photo
from tests.support.mail import FULL_FORM, case_email, submit
from tests.support.sink import Delivered, RelaySink

pytestmark = pytest.mark.xdist_group("browser")

PHONE = {"width": 375, "height": 812}  # an iPhone's CSS pixels
# Long unbroken words, as phones and scanners name files and charts name records.
LONG_NAME = "IMG_20261130_101500_left_forearm_whole_area_overview_wide_shot.jpg"
LONG_MRN = "Chart/MRN: MRN-0000000000000000000000000000000000000001-CLINIC-NORTH-WING"


def html_of(delivered: Delivered) -> str:
    part = delivered.message.get_body(("html",))
    assert part is not None, "every email has an HTML part"
    return part.get_content()


def show_on_phone(chromium: object, html: str, name: str) -> tuple[int, Path]:
    context = chromium.new_context(viewport=PHONE, device_scale_factor=2)  # type: ignore[attr-defined]
    try:
        page = context.new_page()
        page.set_content(html)
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"email-{name}-375px.png"
        page.screenshot(path=str(path), full_page=True)
        return int(page.evaluate("document.scrollingElement.scrollWidth")), path
    finally:
        context.close()


def test_the_ack_and_help_fit_a_phone_screen(
    site: RunningService, chromium: object, sink: RelaySink, people: dict[str, str],
) -> None:
    provider = people["provider"]
    form = FULL_FORM.replace("Chart/MRN: MRN-0001", LONG_MRN)
    photos = [(LONG_NAME, skin_photo(seed=1)), ("closeup_front.jpg", skin_photo(seed=2))]
    code, _ = submit(site.port, provider, PASSWORD, case_email(provider, CASES, form, photos))
    assert code == 250
    bleeding = form.replace("Symptoms: itch, worse at night",
                            "Symptoms: a mole on the back that started to bleed")
    photos.append(("oblique_side.jpg", skin_photo(seed=3)))
    code, _ = submit(site.port, provider, PASSWORD, case_email(provider, CASES, bleeding, photos))
    assert code == 250
    code, _ = submit(site.port, provider, PASSWORD,
                     case_email(provider, "help@derm.localhost", "", []))
    assert code == 250
    received = sink.wait_for(provider, count=3)
    by_subject = {str(d.message["Subject"]): d for d in received}
    ack = next(d for s, d in by_subject.items() if s.endswith("more needed"))
    complete = next(d for s, d in by_subject.items() if s.endswith("received"))
    help_mail = next(d for s, d in by_subject.items() if s.startswith("How to send"))
    assert "<h1" in html_of(ack) and "<ul>" in html_of(ack)  # real HTML, not wrapped text

    for name, delivered in (("ack-incomplete", ack), ("ack", complete), ("help", help_mail)):
        width, shot = show_on_phone(chromium, html_of(delivered), name)
        assert shot.stat().st_size > 0
        assert width <= PHONE["width"], f"{name}: {width} px wide, the phone shows 375"
