"""The consult report as the clinical record (issue #9 item 3): page furniture on every page,
the answer in the order it is written, the conversation in time order. Real wkhtmltopdf, the
text read back page by page with pypdf; synthetic data only."""

from __future__ import annotations

import html
import io
import re
import shutil
import subprocess
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from pypdf import PdfReader

from mailflow.parse.answer import NAMES
from mailflow.reports import paging
from mailflow.reports.model import ConsultReport, ReportComment
from mailflow.reports.pdf import render_consult_pdf
from mailflow.reports.sample import sample_report

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = ROOT / "templates"
ARTIFACTS = ROOT / "test-artifacts"
MM = 72 / 25.4
WORD = re.compile(
    r'<word xMin="[\d.]+" yMin="([\d.]+)" xMax="[\d.]+" yMax="([\d.]+)">([^<]*)</word>')


def flat(text: str) -> str:
    return " ".join(text.split())


def page_texts(data: bytes, password: str | None = None) -> list[str]:
    reader = PdfReader(io.BytesIO(data))
    if password is not None:
        assert reader.decrypt(password)
    return [flat(page.extract_text()) for page in reader.pages]


def long_report(**overrides: object) -> ConsultReport:
    """A report with a long conversation: four pages or so."""
    base = sample_report(addenda=True, comments=True)
    talk = tuple(
        ReportComment(
            at=base.answered_at + timedelta(hours=2 + i),
            author="Dr Alex Referrer" if i % 2 == 0 else "Dr Morgan Skinner",
            role="provider" if i % 2 == 0 else "dermatologist",
            body=f"Follow-up note {i:02d}. " + "The plaques are flatter and less itchy. " * 8,
        )
        for i in range(30)
    )
    return replace(base, comments=base.comments + talk, **overrides)


@pytest.fixture(scope="module")
def long_pdf() -> bytes:
    data = render_consult_pdf(long_report(), TEMPLATES)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "consult-long.pdf").write_bytes(data)  # for a human to look at
    return data


def test_every_page_carries_the_patient_the_case_and_page_n_of_m(long_pdf: bytes) -> None:
    pages = page_texts(long_pdf)
    total = len(pages)
    assert total >= 3
    for number, text in enumerate(pages, start=1):
        for words in ("Jane Testpatient", "DOB 1984-03-14", "DERM-2026-000123",
                      f"Page {number} of {total}"):
            assert words in text, (number, words)
        others = [n for n in range(1, total + 1) if n != number]
        assert not any(f"Page {n} of" in text for n in others), number


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils")
def test_the_furniture_sits_in_the_margins_clear_of_the_content(
    long_pdf: bytes, tmp_path: Path
) -> None:
    """Where each word lands, as poppler lays the page out: the header and footer inside the
    12 mm margins, the report's own words between them."""
    path = tmp_path / "long.pdf"
    path.write_bytes(long_pdf)
    layout = subprocess.run(["pdftotext", "-f", "2", "-l", "2", "-bbox", str(path), "-"],
                            check=True, capture_output=True, text=True).stdout
    height = float(re.search(r'<page width="[\d.]+" height="([\d.]+)"', layout).group(1))
    words = [(html.unescape(w), float(top) / MM, (height - float(bottom)) / MM)
             for top, bottom, w in WORD.findall(layout)]
    header = [w for w in words if w[2] > height / MM - paging.MARGIN_MM]
    footer = [w for w in words if w[1] > height / MM - paging.MARGIN_MM]
    assert [w[0] for w in header][:3] == ["Jane", "Testpatient", "·"]
    assert "DERM-2026-000123" in [w[0] for w in header]
    assert [w[0] for w in footer][-4:] == ["Page", "2", "of", str(len(page_texts(long_pdf)))]
    assert all(w[1] > paging.HEADER_TOP_MM - 0.5 for w in header)
    assert all(w[2] > paging.FOOTER_BASELINE_MM - 1.5 for w in footer)
    body = [w for w in words if w not in header and w not in footer]
    assert body and all(top >= paging.MARGIN_MM - 0.5 and bottom >= paging.MARGIN_MM - 0.5
                        for _w, top, bottom in body)


def test_a_name_outside_latin_1_is_printed_as_written() -> None:
    report = replace(sample_report(photos=0), patient_name="Nguyễn Thị Ánh 王秀英")
    pages = page_texts(render_consult_pdf(report, TEMPLATES))
    assert all("Nguyễn Thị Ánh" in text for text in pages)


def test_markup_in_the_name_is_text_in_the_furniture_too() -> None:
    report = replace(sample_report(photos=0), patient_name="<b>Bold</b> <i>Jane</i>")
    assert all("<b>Bold</b> <i>Jane</i>" in text
               for text in page_texts(render_consult_pdf(report, TEMPLATES)))


def test_numbering_comes_before_the_password() -> None:
    data = render_consult_pdf(long_report(photos=()), TEMPLATES, password="furniture pass 7")
    reader = PdfReader(io.BytesIO(data))
    assert reader.is_encrypted and reader.trailer["/Encrypt"]["/V"] == 5
    assert b"Jane Testpatient" not in data and b"Page 1 of" not in data
    pages = page_texts(data, "furniture pass 7")
    assert len(pages) >= 2
    assert all(f"Page {n} of {len(pages)}" in t for n, t in enumerate(pages, start=1))


def test_the_answer_follows_the_order_it_is_written_in() -> None:
    text = flat(" ".join(page_texts(render_consult_pdf(sample_report(photos=0), TEMPLATES))))
    answer = text[text.index("CONSULT ANSWER"):]
    labels = [NAMES[k] for k in ("diagnosis", "differential", "plan", "follow_up", "in_person",
                                 "biopsy", "icd10", "image_quality")]
    where = [answer.casefold().index(label.casefold()) for label in labels]
    assert where == sorted(where), list(zip(labels, where, strict=True))


def test_history_starts_with_the_reason_and_urgency_is_in_the_header() -> None:
    report = replace(sample_report(photos=0), urgency="urgent")
    first = page_texts(render_consult_pdf(report, TEMPLATES))[0]
    history = first[first.index("HISTORY"):]
    assert history.startswith("HISTORY Reason for referral / question Itchy coin-shaped")
    assert "Urgency" not in first
    assert first.index("URGENT") < first.index("HISTORY")  # in the header block


def test_the_conversation_reads_in_time_order_around_the_answer() -> None:
    text = " ".join(page_texts(render_consult_pdf(sample_report(addenda=True, comments=True),
                                                  TEMPLATES)))
    order = ["Conversation before the answer",
             "More info question · Dr Morgan Skinner", "Mon 2 Nov 2026, 10:35 EST",
             "Has she used any new soaps",
             "Answer to the question · Dr Alex Referrer", "Mon 2 Nov 2026, 10:55 EST",
             "No new products",
             "CONSULT ANSWER", "Nummular eczema",
             "Addendum 1", "KOH scraping now",
             "Conversation after the answer",
             "Comment · Dr Alex Referrer", "Should she stop the hydrocortisone?",
             "Comment · Dr Morgan Skinner", "Swimming is fine",
             "Addendum 1 · Dr Morgan Skinner"]
    where = [text.casefold().index(words.casefold()) for words in order]
    assert where == sorted(where), list(zip(order, where, strict=True))
