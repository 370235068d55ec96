"""Issue #14 item 1: on a 375 px phone, a case page shows this case's photo and the same view
from the patient's earlier case side by side, with their dates, and the page does not scroll
sideways. The cases come by the real flow (spool, worker, report runner: the SMTP door's own
test is tests/e2e/test_patient_over_time.py); Chromium reads the page from the running web
part. The screenshot goes to test-artifacts/screenshots/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from mailflow.app import App
from mailflow.workflow.pool import AnalysisPool
from tests.browser.conftest import SHOTS
from tests.conftest import DERMS, PASSWORD, RunningService
from tests.support.images import skin_photo
from tests.support.mail import FULL_FORM
from tests.support.provider_mail import last, new_case, provider_app, reply
from tests.support.review import ANSWER

pytestmark = pytest.mark.xdist_group("browser")  # one Chromium at a time (tests/browser)

PHONE = {"width": 375, "height": 812}
VIEWS = ("distribution.jpg", "closeup_front.jpg", "oblique_side.jpg")
# Each compare row's figures: where they sit on the page.
BOXES = """rows => rows.map(row => [...row.querySelectorAll('figure')].map(f => {
  const r = f.getBoundingClientRect(); return [r.left, r.top, r.right]; }))"""


@pytest.fixture
def mail_app(tmp_path: Path, db_url: str) -> Iterator[App]:
    with provider_app(tmp_path, db_url) as application:
        yield application


def test_the_same_view_then_and_now_side_by_side_on_a_phone(
    mail_app: App, chromium: object, process_pool: AnalysisPool, request: pytest.FixtureRequest,
) -> None:
    def photos(seed: int) -> list[tuple[str, bytes]]:
        return [(n, skin_photo(width=800, height=600, seed=seed + i)) for i, n in enumerate(VIEWS)]

    first = new_case(mail_app, FULL_FORM, photos(1))
    reply(mail_app, last(mail_app, DERMS[0], "derm_case"), DERMS[0], ANSWER)
    second = new_case(mail_app, FULL_FORM.replace("3 months", "4 months"), photos(11))
    site = RunningService(mail_app, process_pool, ("web",)).start()
    context = chromium.new_context(base_url=site.web_url, viewport=PHONE,  # type: ignore[attr-defined]
                                   device_scale_factor=2)
    try:
        page = context.new_page()
        page.goto("/login")
        page.fill("input[name=email]", DERMS[0])
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url("**/")
        page.goto(f"/cases/{second}")
        section = page.locator("#over-time")
        section.scroll_into_view_if_needed()
        expect(section.locator(".compare")).to_have_count(3)
        expect(section).to_contain_text("Nummular eczema")
        images = section.locator(".compare img")
        expect(images).to_have_count(6)
        for i in range(6):  # every thumbnail loaded (each through its own case's photo URL)
            expect(images.nth(i)).to_have_js_property("complete", True)
            assert images.nth(i).evaluate("img => img.naturalWidth") > 0
        rows = section.locator(".compare").evaluate_all(BOXES)
        for now, then in rows:
            assert abs(now[1] - then[1]) < 1, rows  # on one line
            assert now[2] <= then[0] and then[2] <= PHONE["width"], rows  # side by side, in view
        captions = section.locator(".compare figcaption")
        expect(captions.nth(0)).to_contain_text("This case")
        expect(captions.nth(1)).to_contain_text(first)
        assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]
        SHOTS.mkdir(parents=True, exist_ok=True)
        db = "postgres-" if "postgres" in request.node.name else ""
        section.screenshot(path=str(SHOTS / f"{db}case-over-time-375px.png"))
        page.screenshot(path=str(SHOTS / f"{db}case-page-over-time-375px.png"), full_page=True)
    finally:
        context.close()
        site.stop()
