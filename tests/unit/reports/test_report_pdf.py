"""Consult report PDF: real wkhtmltopdf, text read back with pypdf; synthetic data only."""

from __future__ import annotations

import io
import shutil
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pypdf import PdfReader
from pypdf.errors import FileNotDecryptedError

from mailflow.reports import jail
from mailflow.reports import pdf as pdfmod
from mailflow.reports.jail import Listener
from mailflow.reports.model import ConsultReport, ReportPhoto
from mailflow.reports.pdf import (
    ReportError,
    addendum_lines,
    format_time,
    html_to_pdf,
    next_step_level,
    render_consult_html,
    render_consult_pdf,
)
from mailflow.reports.sample import sample_report, synthetic_jpeg
from tests.support.pdf import beacon as start_beacon
from tests.support.pdf import pdf_text, squash

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = ROOT / "templates"
ARTIFACTS = ROOT / "test-artifacts"
JPEG_URI = pdfmod.photo_uri(synthetic_jpeg(320, 240))


# --- helpers ------------------------------------------------------------------------------------


def image_count(data: bytes) -> int:
    return sum(len(page.images) for page in PdfReader(io.BytesIO(data)).pages)


def assert_contains(text: str, *needles: str) -> None:
    # casefold: headings are upper-cased by CSS, and the extracted text shows that
    flat = squash(text).casefold()
    for needle in needles:
        assert squash(needle).casefold() in flat, f"{needle!r} not in the PDF text"


@pytest.fixture
def beacon() -> Iterator[Listener]:
    server = start_beacon()
    yield server
    server.close()


@pytest.fixture
def outside_file(tmp_path: Path) -> tuple[Path, str]:
    """A file outside any render folder, holding a marker that must never reach a PDF."""
    # No hyphen or space: a narrow iframe would wrap the text there and hide a leak.
    marker = f"OUTSIDE{uuid.uuid4().hex}"
    folder = tmp_path / "outside"
    folder.mkdir()
    path = folder / "secret.txt"
    path.write_text(f"{marker}\n", encoding="utf-8")
    return path, marker


# --- the sample report --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_report() -> ConsultReport:
    return sample_report(addenda=True, comments=True)


@pytest.fixture(scope="module")
def full_pdf(full_report: ConsultReport) -> bytes:
    data = render_consult_pdf(full_report, TEMPLATES)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "consult-sample.pdf").write_bytes(data)  # for a human to look at
    return data


def test_report_shows_the_case_the_answer_and_the_people(
    full_report: ConsultReport, full_pdf: bytes
) -> None:
    text = pdf_text(full_pdf)
    r = full_report
    assert_contains(
        text,
        r.case_number,
        "Teledermatology consult report",
        r.patient_name,
        f"DOB {r.date_of_birth}",
        r.mrn,
        r.provider_name,
        r.provider_practice,
        r.provider_email,
        r.dermatologist_name,
        r.dermatologist_credentials,
        r.diagnosis,
        r.differential,
        r.tests,
        r.icd10,
        r.next_step,
        r.follow_up,
        r.limitation,
        r.sla_text,
        "SLA met",
        # times in the report's zone with its abbreviation (2 Nov 2026 is after DST ends)
        "Received Mon 2 Nov 2026, 10:05 EST",
        "Answered Mon 2 Nov 2026, 11:17 EST",
    )
    for line in r.plan.splitlines():
        assert_contains(text, line)
    for label, value in r.history:
        assert_contains(text, label, value)
    for photo in r.photos:
        assert_contains(text, photo.caption, *photo.warnings)


def test_addenda_are_dated_and_marked_and_the_answer_stays(
    full_report: ConsultReport, full_pdf: bytes
) -> None:
    text = pdf_text(full_pdf)
    assert_contains(
        text,
        "Addendum 1",
        "Tue 3 Nov 2026, 13:17 EST",
        "KOH scraping now, before starting the steroid",
        "3 weeks",
    )
    # nothing overwritten: the original answer is still there
    assert_contains(text, "Follow-up 4 weeks; re-refer if not improving")


def test_the_conversation_is_in_the_record(full_report: ConsultReport, full_pdf: bytes) -> None:
    text = pdf_text(full_pdf)
    assert_contains(text, "Conversation before the answer", "More info question",
                    "Answer to the question", "Conversation after the answer")
    for comment in full_report.comments:
        assert_contains(text, comment.author, *comment.body.splitlines())


def test_photos_are_embedded_and_two_pages_suffice(full_pdf: bytes) -> None:
    assert image_count(full_pdf) >= 3
    plain = render_consult_pdf(sample_report(), TEMPLATES)
    assert image_count(plain) >= 3
    assert len(PdfReader(io.BytesIO(plain)).pages) <= 2


def test_no_addenda_or_comments_no_sections() -> None:
    text = pdf_text(render_consult_pdf(sample_report(photos=0), TEMPLATES))
    assert "Addendum" not in text
    assert "Appendix" not in text
    assert_contains(text, "No photos were attached to this case.")


@pytest.mark.parametrize(
    ("next_step", "level"),
    [
        ("Manage in primary care", "primary"),
        ("Routine in-person visit", "routine"),
        ("Urgent in-person visit within 2 weeks", "urgent"),
        ("Same day in-person visit", "same-day"),
        ("Something else", "none"),
    ],
)
def test_next_step_is_coloured_by_urgency(next_step: str, level: str) -> None:
    assert next_step_level(next_step) == level
    report = replace(sample_report(photos=0), next_step=next_step)
    html = render_consult_html(report, TEMPLATES, [])
    assert f'class="next {level}"' in html


def test_sla_states() -> None:
    for met, label in ((True, "SLA met"), (False, "SLA not met"), (None, "SLA not measured")):
        report = replace(sample_report(photos=0), sla_met=met)
        assert label in render_consult_html(report, TEMPLATES, [])


def test_times_use_the_zone_abbreviation() -> None:
    ny = ZoneInfo("America/New_York")
    assert format_time(datetime(2026, 7, 6, 14, 42, tzinfo=UTC), ny) == "Mon 6 Jul 2026, 10:42 EDT"
    assert format_time(datetime(2026, 11, 2, 15, 42, tzinfo=UTC), ny) == "Mon 2 Nov 2026, 10:42 EST"
    # naive is taken as UTC rather than failing a report
    assert format_time(datetime(2026, 11, 2, 15, 42), ny) == "Mon 2 Nov 2026, 10:42 EST"


def test_addendum_lines_keep_labels_and_continuations() -> None:
    addendum = sample_report(addenda=True).addenda[0]
    more = replace(addendum, text="Plan: stop the cream\nthen reassess\nFree note without a label")
    assert [(x.label, x.value) for x in addendum_lines(addendum)] == [
        ("Tests", "KOH scraping now, before starting the steroid"),
        ("Follow-up", "3 weeks"),
    ]
    lines = addendum_lines(more)
    assert lines[0].label == "Plan"
    assert lines[0].value.startswith("stop the cream\nthen reassess")


# --- password -----------------------------------------------------------------------------------


def test_password_protected_report_is_aes_256() -> None:
    password = "s3cret pdf pass"
    data = render_consult_pdf(sample_report(photos=1), TEMPLATES, password=password)
    reader = PdfReader(io.BytesIO(data))
    assert reader.is_encrypted
    encrypt = reader.trailer["/Encrypt"].get_object()
    assert encrypt["/V"] == 5 and encrypt["/R"] == 6  # AES-256
    with pytest.raises(FileNotDecryptedError):
        reader.pages[0].extract_text()
    assert not PdfReader(io.BytesIO(data)).decrypt("wrong password")
    assert b"Jane Testpatient" not in data and b"DERM-2026-000123" not in data
    assert_contains(pdf_text(data, password), "Jane Testpatient", "Nummular eczema")


def test_empty_password_is_refused() -> None:
    with pytest.raises(ValueError):
        render_consult_pdf(sample_report(photos=0), TEMPLATES, password="")


# --- security: escaping -------------------------------------------------------------------------


def test_form_values_are_text_and_fetch_nothing(
    beacon: Listener, outside_file: tuple[Path, str]
) -> None:
    secret, marker = outside_file
    payloads = [
        '<img src="file:///etc/hostname">',
        '<iframe src="file:///etc/passwd"></iframe>',
        f'<iframe src="file://{secret}"></iframe>',
        "<script>document.write('PWNED')</script>",
        f'<link rel=stylesheet href="http://127.0.0.1:{beacon.port}/x.css">',
        f'<img src="http://127.0.0.1:{beacon.port}/img.png">',
    ]
    hostile = " ".join(payloads)
    base = sample_report(photos=1)
    photo = replace(base.photos[0], caption=f'"><img src="http://127.0.0.1:{beacon.port}/c">')
    report = replace(
        base,
        patient_name=f"Jane Testpatient {payloads[0]}",
        history=(("Reason for referral", hostile), ("Symptoms", hostile),
                 (payloads[3], "label attack")),
        photos=(photo,),
        plan=hostile,
        next_step=f"same day {payloads[3]}",
    )
    html = render_consult_html(report, TEMPLATES, [])
    assert "<script" not in html and "<iframe" not in html and "<link" not in html
    text = pdf_text(render_consult_pdf(report, TEMPLATES))
    assert_contains(text, "Jane Testpatient", *payloads, photo.caption)
    assert beacon.requests == []
    assert marker not in squash(text)
    # 'PWNED' only inside the literal payloads (question, history x2, plan, next step)
    assert squash(text).count("PWNED") == squash(text).count("document.write('PWNED')")


# --- security: the renderer itself, independent of escaping ------------------------------------


def test_beacon_server_does_record_requests(beacon: Listener) -> None:
    # The no-request assertions below are only worth something if this detector works.
    with urllib.request.urlopen(f"http://127.0.0.1:{beacon.port}/probe", timeout=5) as resp:
        assert resp.read() == b"BEACON-BODY"
    assert beacon.requests == ["/probe"]


def test_raw_html_cannot_reach_network_files_or_run_scripts(
    tmp_path: Path, beacon: Listener, outside_file: tuple[Path, str]
) -> None:
    secret, marker = outside_file
    link = tmp_path / "link.txt"
    link.symlink_to(secret)
    port = beacon.port
    html = f"""<!doctype html><html><head>
<link rel="stylesheet" href="http://127.0.0.1:{port}/x.css">
<style>@import url("http://127.0.0.1:{port}/import.css");
body {{ background: url("http://127.0.0.1:{port}/bg.png"); }}</style>
</head><body>
<p>VISIBLE-TEXT</p>
<img src="{JPEG_URI}" width="160">
<img src="http://127.0.0.1:{port}/beacon.png">
<img src="file:///etc/hostname">
<iframe src="file://{secret}"></iframe>
<object data="file://{secret}" type="text/plain"></object>
<iframe src="../outside/secret.txt"></iframe>
<iframe src="file://{link}"></iframe>
<iframe src="http://127.0.0.1:{port}/frame.html"></iframe>
<script>document.write('JSRAN')</script>
<script src="http://127.0.0.1:{port}/x.js"></script>
</body></html>"""
    data = html_to_pdf(html)
    text = pdf_text(data)
    assert "VISIBLE-TEXT" in text
    assert image_count(data) >= 1  # data: images do load
    assert beacon.requests == []
    assert marker not in squash(text)
    assert "BEACON-BODY" not in text
    assert "JSRAN" not in text


def test_command_keeps_files_scripts_and_network_off() -> None:
    # Guard against a regression to --enable-local-file-access, which makes every file readable.
    argv = jail.jailed(jail.proven_namespaces(), jail.wkhtmltopdf_command())
    assert Path(argv[0]).name == "unshare" and "--net" in argv and "--mount" in argv
    wk = argv[argv.index(shutil.which("wkhtmltopdf") or "wkhtmltopdf") :]
    assert "--enable-local-file-access" not in wk and "--allow" not in wk
    assert "--disable-local-file-access" in wk
    assert "--disable-javascript" in wk
    assert wk[wk.index("--proxy") + 1] == jail.CLOSED_PROXY
    assert "--proxy-hostname-lookup" in wk
    assert wk[-2:] == ["-", "-"]  # HTML on stdin, PDF on stdout


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_no_dns_query_and_no_connection_but_the_closed_proxy(
    bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A host name can leak data through DNS alone; watch the real binary's system calls.
    trace = bin_dir / "trace.txt"
    real = shutil.which("wkhtmltopdf")
    jail.proven_namespaces()
    _fake_wkhtmltopdf(
        bin_dir,
        f'exec strace -f -qq -e trace=connect,sendto,sendmmsg -o "{trace}" "{real}" "$@"',
    )
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    host = f"leak{uuid.uuid4().hex[:12]}.example.com"
    html = (
        f'<p>x</p><img src="http://{host}/a.png"><link rel="stylesheet" href="https://{host}/b">'
        f'<iframe src="http://{host}/c"></iframe>'
    )
    html_to_pdf(html)
    calls = trace.read_text(encoding="utf-8")
    assert "htons(53)" not in calls
    assert host.split(".")[0] not in calls
    inet = [line for line in calls.splitlines() if "connect(" in line and "AF_INET" in line]
    # only the closed proxy, and Qt's print support knocking at a local CUPS (port 631)
    for line in inet:
        assert "htons(9)" in line or "htons(631)" in line, line


# --- the jail's private /tmp, failures -----------------------------------------------------------


@pytest.fixture
def proven() -> tuple[str, ...]:
    """The jail, proven with the real wkhtmltopdf before a test puts a stand-in on PATH."""
    return jail.proven_namespaces()


def _fake_wkhtmltopdf(folder: Path, script: str) -> None:
    exe = folder / "wkhtmltopdf"
    exe.write_text(f"#!/bin/sh\n{script}\n", encoding="utf-8")
    exe.chmod(0o755)


def test_wkhtmltopdf_sees_a_private_in_memory_tmp(
    proven: tuple[str, ...], bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # wkhtmltopdf copies stdin to $TMPDIR/wktemp-*.html: that must land on the jail's tmpfs.
    seen = bin_dir / "seen.txt"
    real = shutil.which("wkhtmltopdf")
    _fake_wkhtmltopdf(
        bin_dir,
        f'{{ echo "$TMPDIR"; stat -c %a /tmp; grep " /tmp " /proc/self/mounts; ls -A /tmp; }}'
        f' > "{seen}"; exec "{real}" "$@"',
    )
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    data = render_consult_pdf(sample_report(photos=2), TEMPLATES)
    assert image_count(data) >= 2  # the photos travel inline
    tmpdir, mode, mount, *listing = seen.read_text(encoding="utf-8").splitlines()
    assert tmpdir == "/tmp"
    assert mode == "700"
    assert mount.startswith("mailflow-render /tmp tmpfs ")
    assert listing == []  # the machine's /tmp is out of sight


def test_timeout_raises(proven: tuple[str, ...]) -> None:
    with pytest.raises(ReportError, match="longer than"):
        render_consult_pdf(sample_report(photos=1), TEMPLATES, timeout=0.001)


def test_failure_raises(
    proven: tuple[str, ...], bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_wkhtmltopdf(bin_dir, "echo 'Error: it broke' >&2; exit 2")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    with pytest.raises(ReportError, match="exit 2"):
        render_consult_pdf(sample_report(photos=1), TEMPLATES)


def test_hung_renderer_is_killed(
    proven: tuple[str, ...], bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A child that keeps the pipes open must not keep us waiting past the timeout.
    _fake_wkhtmltopdf(bin_dir, "sleep 30 & sleep 30")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    with pytest.raises(ReportError, match="longer than"):
        render_consult_pdf(sample_report(photos=0), TEMPLATES, timeout=0.5)


def test_a_truncated_pdf_is_a_failure(
    proven: tuple[str, ...], bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Exit 1 "network error" is accepted only with a whole PDF.
    _fake_wkhtmltopdf(
        bin_dir,
        'cat > /dev/null; printf "%%PDF-1.4 cut"; '
        'echo "Exit with code 1 due to network error: ProtocolUnknownError" >&2; exit 1',
    )
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    with pytest.raises(ReportError, match="exit 1"):
        render_consult_pdf(sample_report(photos=0), TEMPLATES)


def test_missing_wkhtmltopdf_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ReportError, match="wkhtmltopdf not found"):
        render_consult_pdf(sample_report(photos=0), TEMPLATES)


def test_template_problem_is_a_report_error(tmp_path: Path) -> None:
    with pytest.raises(ReportError):
        render_consult_pdf(sample_report(photos=1), tmp_path / "no-templates")


# --- layout robustness --------------------------------------------------------------------------


def test_long_unbroken_text_wraps_instead_of_shrinking_the_page() -> None:
    token = "X" * 400
    report = replace(sample_report(photos=0), plan=f"Start {token} end",
                     history=(("Reason for referral", token),))
    data = render_consult_pdf(report, TEMPLATES)
    text = pdf_text(data)
    assert squash(text).count(token) == 2  # all of it, nothing clipped
    assert _font_size_of(data, "DERM-2026-000123") == pytest.approx(
        _font_size_of(render_consult_pdf(sample_report(photos=0), TEMPLATES), "DERM-2026-000123"),
        rel=0.02,
    )


def _font_size_of(data: bytes, needle: str) -> float:
    """Rendered size of the text run holding ``needle`` (smart shrinking would reduce it)."""
    sizes: list[float] = []

    def visit(text: str, cm: list[float], tm: list[float], font: object, size: float) -> None:
        if needle in text:
            sizes.append(abs(size * tm[3] * cm[3]))

    PdfReader(io.BytesIO(data)).pages[0].extract_text(visitor_text=visit)
    assert sizes, f"{needle!r} not found"
    return sizes[0]


def test_portrait_photos_fit_their_cell() -> None:
    portrait = ReportPhoto(1, "distribution", "tall", synthetic_jpeg(600, 1600, seed=5))
    report = replace(sample_report(photos=0), photos=(portrait,))
    html = render_consult_html(
        report,
        TEMPLATES,
        [pdfmod.PhotoView(portrait, "photo-01.jpg", *pdfmod._photo_size(portrait.jpeg))],
    )
    w, h = pdfmod._photo_size(portrait.jpeg)
    assert h == pdfmod._CELL_H_MM and w < pdfmod._CELL_W_MM
    assert f"width: {w}mm; height: {h}mm" in html
