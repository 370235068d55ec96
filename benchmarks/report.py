"""Report benchmark: the consult PDF render beside a bare wkhtmltopdf call of the same HTML.

1. mailflow: `render_consult_pdf` for a two-page report with three 1600 px photos (photos
   inlined as data URIs, template rendered, wkhtmltopdf locked down and jailed: unshare into an
   empty network namespace with a private tmpfs, HTML on stdin, PDF on stdout).
2. Baseline, in the same run and interleaved with 1: the same HTML and photos written once to a
   temp folder, then `wkhtmltopdf --quiet --javascript-delay 0 --enable-local-file-access
   in.html out.pdf` through subprocess.
3. For information: the same render with an AES-256 password, the template alone, and the
   page furniture alone (paging.add_furniture on the bare call's PDF: header stamped, footer
   drawn, the header's page cut off), which is part of 1 and not of 2.

Targets: render within 1.3x of the bare call, render p95 under 0.3 s. A missed target is
printed MISSED, never raised.
"""

from __future__ import annotations

import io
import os
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pypdf import PdfReader

from benchmarks.figures import pct, timed, verdict
from mailflow.reports import paging
from mailflow.reports import pdf as reports_pdf
from mailflow.reports.model import ConsultReport
from mailflow.reports.sample import sample_report

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "templates"
RATIO_TARGET = 1.3
P95_TARGET_S = 0.3


def _bare_folder(report: ConsultReport) -> Path:
    """The HTML mailflow renders, with its photos, written once for the baseline."""
    folder = Path(tempfile.mkdtemp(prefix="mailflow-bench-report-"))
    photos = []
    for i, photo in enumerate(report.photos, start=1):
        name = f"photo-{i:02d}.jpg"
        (folder / name).write_bytes(photo.jpeg)
        photos.append(reports_pdf.PhotoView(photo, name, *reports_pdf._photo_size(photo.jpeg)))
    html = reports_pdf.render_consult_html(report, TEMPLATES, photos)
    (folder / "in.html").write_text(html, encoding="utf-8")
    return folder


@dataclass
class Measured:
    sample: bytes  # one PDF of ours
    pages: int
    bare_pages: int
    times: dict[str, list[float]]  # seconds per call, by what was called
    load_before: float
    load_after: float


def run(quick: bool = False) -> None:
    rounds, warmup = (8, 2) if quick else (40, 4)
    exe = shutil.which("wkhtmltopdf")
    if exe is None:
        print("report benchmark: wkhtmltopdf not installed, nothing measured")
        return
    report = sample_report(photos=3, photo_size=(1600, 1200))
    folder = _bare_folder(report)
    try:
        measured = _measure(report, folder, exe, rounds, warmup)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    _print(measured, rounds)


def _measure(report: ConsultReport, folder: Path, exe: str, rounds: int,
             warmup: int) -> Measured:
    bare_cmd = [exe, "--quiet", "--javascript-delay", "0", "--enable-local-file-access"]
    bare_cmd += ["in.html", "out.pdf"]
    # XDG_RUNTIME_DIR for both, so neither pays for Qt's warning.
    bare_env = {**os.environ, "XDG_RUNTIME_DIR": str(folder)}

    def bare() -> None:
        subprocess.run(bare_cmd, cwd=folder, env=bare_env, check=False, capture_output=True)

    def mine() -> None:
        reports_pdf.render_consult_pdf(report, TEMPLATES)

    calls: dict[str, Callable[[], object]] = {
        "bare": bare,
        "mine": mine,
        "protected": lambda: reports_pdf.render_consult_pdf(report, TEMPLATES,
                                                            password="bench password"),
        "template": lambda: reports_pdf.render_consult_html(report, TEMPLATES, []),
        "furniture": lambda: paging.add_furniture((folder / "out.pdf").read_bytes(),
                                                  "Teledermatology consult report"),
    }
    sample = reports_pdf.render_consult_pdf(report, TEMPLATES)
    pages = len(PdfReader(io.BytesIO(sample)).pages)
    for _ in range(warmup):
        bare()
        mine()
    load_before = os.getloadavg()[0]
    times: dict[str, list[float]] = {key: [] for key in calls}
    for _ in range(rounds):  # interleaved, so background load hits both alike
        for key, call in calls.items():
            times[key].append(timed(call))
    load_after = os.getloadavg()[0]
    bare_pages = len(PdfReader(folder / "out.pdf").pages)
    return Measured(sample, pages, bare_pages, times, load_before, load_after)


def _print(measured: Measured, rounds: int) -> None:
    times, pages, bare_pages, sample = (measured.times, measured.pages, measured.bare_pages,
                                        measured.sample)
    load_before, load_after = measured.load_before, measured.load_after
    print()
    print(
        f"== consult report PDF: {pages} pages (bare: {bare_pages}), 3 photos 1600x1200, "
        f"{len(sample) / 1e6:.2f} MB; {rounds} rounds, interleaved =="
    )
    print(f"load average {load_before:.2f} before, {load_after:.2f} after (2 cores: >1 is noisy)")
    header = f"{'figure':<36}{'mailflow':>11}{'bare call':>12}{'ratio':>9}  {'target':<16}verdict"
    print(header)
    print("-" * len(header))
    for q in (50, 95):
        m, b = pct(times["mine"], q), pct(times["bare"], q)
        ratio = m / b
        ratio_ok = ratio <= RATIO_TARGET
        print(
            f"{f'render p{q}':<36}{m * 1000:>8.0f} ms{b * 1000:>9.0f} ms{ratio:>8.2f}x  "
            f"{f'<= {RATIO_TARGET}x':<16}{verdict(ratio_ok)}"
        )
    p95 = pct(times["mine"], 95)
    print(
        f"{'render p95, absolute':<36}{p95 * 1000:>8.0f} ms{'-':>12}{'-':>9}  "
        f"{f'< {P95_TARGET_S * 1000:.0f} ms':<16}{verdict(p95 < P95_TARGET_S)}"
    )
    for key, title in (("protected", "render + AES-256 password"), ("template", "template only"),
                       ("furniture", "page furniture (pypdf) only")):
        v = times[key]
        print(f"{title:<36}p50 {pct(v, 50) * 1000:.1f} ms, p95 {pct(v, 95) * 1000:.1f} ms")
    print(f"render mean {statistics.fmean(times['mine']) * 1000:.0f} ms")
