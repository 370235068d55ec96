"""Issue #9 item 7: every email a provider reads is real HTML that reads well on a 375 px phone.

The acknowledgement and help come from the running service (a case and a help request over
SMTP, the replies taken from the relay sink); every other kind comes from the real flow without
a service (tests/support/provider_mail.py). Chromium shows each HTML part at 375 px wide, the
screenshots go to test-artifacts/screenshots/, and nothing may need sideways scrolling.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailflow.app import App
from tests.browser.conftest import SHOTS
from tests.conftest import PASSWORD, RunningService
from tests.support.cases import CASES
from tests.support.images import skin_photo
from tests.support.mail import FULL_FORM, case_email, submit
from tests.support.provider_mail import KINDS, provider_app, provider_emails
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

OWN_HTML = ("help", "ack", "ack_incomplete")  # HTML templates of their own (forms kept as typed)
# Text laid out as typed (a pre-wrapped box) rather than reflowed as paragraphs.
PRE_WRAPPED = ("[...document.querySelectorAll('.card *')]"
               ".some(e => getComputedStyle(e).whiteSpace.startsWith('pre'))")


@pytest.fixture
def mail_app(tmp_path: Path, db_url: str) -> Iterator[App]:
    with provider_app(tmp_path, db_url) as application:
        yield application


def test_every_provider_email_is_real_html_that_fits_a_phone_screen(
    mail_app: App, chromium: object,
) -> None:
    emails = provider_emails(mail_app)
    assert {s.kind for s in emails} >= KINDS
    shown: dict[str, int] = {}
    seen: Counter[str] = Counter()
    context = chromium.new_context(viewport=PHONE, device_scale_factor=2)  # type: ignore[attr-defined]
    try:
        page = context.new_page()  # one page for them all: each email replaces the last
        SHOTS.mkdir(parents=True, exist_ok=True)
        for sent in emails:
            seen[sent.kind] += 1
            name = sent.kind.replace("_", "-") + (f"-{seen[sent.kind]}" if seen[sent.kind] > 1
                                                  else "")
            page.set_content(sent.html)
            assert page.locator(".card p").count() > 0, (sent.kind, sent.html)
            if sent.kind not in OWN_HTML:
                assert not page.evaluate(PRE_WRAPPED), (sent.kind, sent.html)
            for href in page.locator("a[href^='http']").evaluate_all(
                    "links => links.map(a => a.getAttribute('href'))"):
                assert href in sent.text, (sent.kind, href)  # each link is the text's own
            page.screenshot(path=str(SHOTS / f"email-{name}-375px.png"), full_page=True)
            shown[name] = int(page.evaluate("document.scrollingElement.scrollWidth"))
    finally:
        context.close()
    assert {name: w for name, w in shown.items() if w > PHONE["width"]} == {}
