"""Consult report PDF: Jinja2 (autoescape) -> HTML in a private temp folder -> wkhtmltopdf.

Security (DESIGN §6), as measured on Debian's wkhtmltopdf 0.12.6 (unpatched Qt):

- JavaScript off (``--disable-javascript``).
- Local files: ``--disable-local-file-access --allow <render folder>``. ``--allow`` only takes
  effect while local file access is *disabled*: with ``--enable-local-file-access`` every file
  on the machine is readable (an ``<iframe src="file:///etc/passwd">`` renders it) whatever
  ``--allow`` says. The allowed folder is checked on canonical paths, so ``../`` and symlinks
  out of it are refused too.
- Network: wkhtmltopdf has no switch to turn it off (local file access settings do not touch
  http), so ``--proxy`` points every request at a closed local port, loopback included, and
  ``--proxy-hostname-lookup`` leaves name resolution to that proxy: without it Qt first looks
  the host up in DNS, and a query for a made-up host name is itself a way out.
- Blocked resources must not fail the render: wkhtmltopdf then exits 1 ("due to network
  error") although the PDF is complete; that exit is accepted when the PDF is whole.

pdfkit builds the command line (and validates the binary); we run it ourselves because pdfkit
has no timeout and treats the exit above as a failure.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
import pdfkit
from pdfkit.configuration import Configuration
from PIL import Image

from mailflow.reports.model import ConsultReport, ReportAddendum, ReportPhoto
from mailflow.reports.paging import add_furniture
from mailflow.reports.record import answer_fields, conversation

log = logging.getLogger(__name__)

TEMPLATE = "consult.html.j2"
DEFAULT_TIMEOUT = 30.0
# Port 9 (discard) on loopback: nothing listens, so every proxied request is refused at once.
CLOSED_PROXY = "http://127.0.0.1:9"
_TMP_PREFIX = "mailflow-report-"
_STDERR_LIMIT = 600


class ReportError(Exception):
    """The PDF could not be produced (wkhtmltopdf missing, failed, or too slow)."""


# --- wkhtmltopdf --------------------------------------------------------------------------------


def _wkhtmltopdf() -> Configuration:
    path = shutil.which("wkhtmltopdf")
    if path is None:
        raise ReportError(
            "wkhtmltopdf not found on PATH: install it (Debian: apt-get install wkhtmltopdf)"
        )
    return _configuration(path)


@lru_cache(maxsize=4)
def _configuration(path: str) -> Configuration:
    try:
        # environ is replaced per call (see _command); this one only satisfies pdfkit.
        return Configuration(wkhtmltopdf=path, environ={"PATH": os.defpath})
    except OSError as exc:
        raise ReportError(f"wkhtmltopdf at {path} is not usable: {exc}") from exc


def _options(workdir: Path) -> dict[str, str | None]:
    # No --no-outline: unpatched Qt has no outlines and prints a warning for the switch.
    return {
        "--quiet": None,
        "--disable-javascript": None,
        # The default 200 ms wait is for scripts, which are off; 0 saves ~200 ms per render.
        "--javascript-delay": "0",
        "--disable-local-file-access": None,
        "--allow": str(workdir),
        "--proxy": CLOSED_PROXY,
        "--proxy-hostname-lookup": None,  # no DNS query either
        "--encoding": "utf-8",
        "--page-size": "Letter",
        "--margin-top": "12mm",
        "--margin-bottom": "12mm",
        "--margin-left": "12mm",
        "--margin-right": "12mm",
        "--load-error-handling": "ignore",
        "--load-media-error-handling": "ignore",
    }


def _command(html_path: Path, pdf_path: Path, workdir: Path) -> list[str]:
    kit = pdfkit.PDFKit(
        str(html_path), "file", options=_options(workdir), configuration=_wkhtmltopdf()
    )
    return kit.command(str(pdf_path))


def _environment(workdir: Path) -> dict[str, str]:
    # Minimal on purpose: no *_proxy variables, no display; Qt wants a private runtime dir
    # (mode 0700), and the render folder is one.
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": os.environ.get("HOME", str(workdir)),
        "LANG": "C.UTF-8",
        "XDG_RUNTIME_DIR": str(workdir),
        "QT_QPA_PLATFORM": "offscreen",
    }


def _pdf_is_whole(data: bytes) -> bool:
    return data.startswith(b"%PDF-") and b"%%EOF" in data[-1024:]


def html_to_pdf(html: str, workdir: Path, *, timeout: float = DEFAULT_TIMEOUT) -> bytes:
    """Render ``html`` with wkhtmltopdf; only files inside ``workdir`` can be loaded.

    ``workdir`` must be a private folder the caller owns (it holds the page's images, referenced
    by relative names); the HTML and the PDF are written there as well.
    """
    workdir = workdir.resolve()  # --allow compares canonical paths
    html_path = workdir / "report.html"
    pdf_path = workdir / "report.pdf"
    html_path.write_text(html, encoding="utf-8")
    argv = _command(html_path, pdf_path, workdir)
    try:
        # Own session, so a timeout kills the whole process group, not just the parent.
        proc = subprocess.Popen(
            argv,
            cwd=workdir,
            env=_environment(workdir),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise ReportError(f"cannot start wkhtmltopdf: {exc}") from exc
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        _kill_group(proc)
        raise ReportError(f"wkhtmltopdf took longer than {timeout:g} s") from exc
    except BaseException:
        _kill_group(proc)
        raise
    stderr = err.decode("utf-8", "replace").strip()[-_STDERR_LIMIT:]
    data = pdf_path.read_bytes() if pdf_path.exists() else b""
    if proc.returncode == 0 and _pdf_is_whole(data):
        return data
    # A blocked or failed sub-resource: exit 1 with a whole PDF.
    if proc.returncode == 1 and "network error" in stderr and _pdf_is_whole(data):
        log.info("wkhtmltopdf: a resource was blocked (%s)", stderr.splitlines()[-1])
        return data
    raise ReportError(f"wkhtmltopdf failed (exit {proc.returncode}): {stderr or 'no output'}")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# --- template context ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PhotoView:
    photo: ReportPhoto
    file: str  # relative name inside the render folder
    width_mm: float  # fitted into the grid cell, aspect ratio kept
    height_mm: float


@dataclass(frozen=True)
class Line:
    label: str
    value: str


# One cell of the two-column photo grid (Letter, 12 mm margins: ~192 mm of width).
_CELL_W_MM = 80.0
_CELL_H_MM = 58.0

# The next step decides the colour band; keywords, most urgent first.
_URGENCY = (
    ("same-day", ("same day", "same-day", "emergency", "today")),
    ("urgent", ("urgent", "2 weeks", "two weeks")),
    ("routine", ("routine",)),
    ("primary", ("primary care", "not needed", "no visit", "manage")),
)


def next_step_level(next_step: str) -> str:
    text = next_step.lower()
    for level, words in _URGENCY:
        if any(w in text for w in words):
            return level
    return "none"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("unknown report time zone %r: showing UTC", name)
        return ZoneInfo("UTC")


def format_time(at: datetime, zone: ZoneInfo) -> str:
    """'Mon 2 Nov 2026, 10:42 EST' in the report's zone (naive times are taken as UTC)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    local = at.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b %Y}, {local:%H:%M} {local.tzname() or ''}".strip()


def _photo_size(jpeg: bytes) -> tuple[float, float]:
    # Image.open only parses the header: no decode, a fraction of a millisecond.
    try:
        with Image.open(io.BytesIO(jpeg)) as im:
            w, h = im.size
    except Exception:  # noqa: BLE001 - an unreadable photo still gets a cell, WebKit decides
        w, h = 4, 3
    scale = min(_CELL_W_MM / w, _CELL_H_MM / h)
    return round(w * scale, 1), round(h * scale, 1)


_LABEL = re.compile(r"^([A-Za-z][A-Za-z0-9 /()&'.-]{0,40}):\s*(.*)$")


def addendum_lines(addendum: ReportAddendum) -> list[Line]:
    """'Label: value' lines as pairs; other lines continue the previous value."""
    lines: list[Line] = []
    for raw in addendum.text.splitlines():
        m = _LABEL.match(raw.strip())
        if m:
            lines.append(Line(m.group(1).strip(), m.group(2).strip()))
        elif lines and raw.strip():
            last = lines[-1]
            lines[-1] = Line(last.label, f"{last.value}\n{raw.strip()}".strip())
        elif raw.strip():
            lines.append(Line("", raw.strip()))
    return lines


def _context(report: ConsultReport, photos: list[PhotoView]) -> dict[str, object]:
    zone = _zone(report.timezone)
    sla = {True: "Met", False: "Not met", None: "Not measured"}[report.sla_met]
    before, after = conversation(report)
    return {
        "r": report,
        "photos": photos,
        "photo_rows": [photos[i : i + 2] for i in range(0, len(photos), 2)],
        "issued": format_time(report.issued_at, zone),
        "received": format_time(report.received_at, zone),
        "answered": format_time(report.answered_at, zone),
        "sla_status": sla,
        "sla_class": {True: "ok", False: "bad", None: "na"}[report.sla_met],
        "next_level": next_step_level(report.next_step),
        "answer": answer_fields(report),
        "addenda": [
            {"a": a, "at": format_time(a.at, zone), "lines": addendum_lines(a)}
            for a in report.addenda
        ],
        "before": [{"e": e, "at": format_time(e.at, zone)} for e in before],
        "after": [{"e": e, "at": format_time(e.at, zone)} for e in after],
    }


def _footer(report: ConsultReport) -> str:
    issued = format_time(report.issued_at, _zone(report.timezone))
    return f"Teledermatology consult report \u00b7 issued {issued} \u00b7 confidential"


@lru_cache(maxsize=8)
def _environment_for(templates_dir: Path) -> jinja2.Environment:
    # Cached: template compilation costs more than rendering.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        autoescape=True,  # every value is untrusted form/email text
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_consult_html(report: ConsultReport, templates_dir: Path, photos: list[PhotoView]) -> str:
    env = _environment_for(Path(templates_dir).resolve())
    return env.get_template(f"pdf/{TEMPLATE}").render(_context(report, photos))


# --- the report ---------------------------------------------------------------------------------


def render_consult_pdf(
    report: ConsultReport,
    templates_dir: Path,
    password: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    tmp_root: Path | None = None,
) -> bytes:
    """The consult report as PDF bytes; AES-256 encrypted when ``password`` is given.

    ``templates_dir`` is the project's templates/ folder (the template is pdf/consult.html.j2).
    Each call renders in its own 0700 temp folder (under ``tmp_root`` if given), removed
    afterwards whatever happens.
    """
    if password is not None and not password:
        raise ValueError("an empty PDF password would not protect anything")
    workdir = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=tmp_root))  # mode 0700
    try:
        photos: list[PhotoView] = []
        for i, photo in enumerate(report.photos, start=1):
            name = f"photo-{i:02d}.jpg"
            (workdir / name).write_bytes(photo.jpeg)  # as received: already a clean JPEG
            w, h = _photo_size(photo.jpeg)
            photos.append(PhotoView(photo, name, w, h))
        try:
            html = render_consult_html(report, templates_dir, photos)
        except jinja2.TemplateError as exc:
            raise ReportError(f"consult template failed: {exc}") from exc
        pdf = html_to_pdf(html, workdir, timeout=timeout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    pdf = add_furniture(pdf, _footer(report))  # each page's header and footer, before encryption
    return encrypt_pdf(pdf, password) if password is not None else pdf


def encrypt_pdf(pdf: bytes, password: str) -> bytes:
    """AES-256 (/V 5, /R 6); the owner password is random and thrown away."""
    from pypdf import PdfReader, PdfWriter  # only needed for protected reports

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(
        user_password=password,
        owner_password=secrets.token_urlsafe(32),
        algorithm="AES-256",
    )
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
