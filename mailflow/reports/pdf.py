"""Consult report PDF: Jinja2 (autoescape) -> HTML -> wkhtmltopdf in its jail (jail.py).

The HTML, photos included as data URIs, goes to wkhtmltopdf on stdin and the PDF comes back on
stdout: no file of the report is written by this process (see jail.py for wkhtmltopdf's own).
"""

from __future__ import annotations

import base64
import io
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from PIL import Image

from mailflow.reports.jail import DEFAULT_TIMEOUT, RendererUnsafe, ReportError, html_to_pdf
from mailflow.reports.model import ConsultReport, ReportAddendum, ReportPhoto
from mailflow.reports.paging import add_furniture
from mailflow.reports.record import answer_fields, conversation

__all__ = ["DEFAULT_TIMEOUT", "RendererUnsafe", "ReportError", "html_to_pdf"]

log = logging.getLogger(__name__)

TEMPLATE = "consult.html.j2"


# --- template context ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PhotoView:
    photo: ReportPhoto
    file: str  # the img src: a data: URI (wkhtmltopdf may load no file)
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
        "earlier": [{"e": e, "at": format_time(e.answered_at or e.received_at, zone)}
                    for e in report.earlier],
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


def photo_uri(jpeg: bytes) -> str:
    # As received: already a clean JPEG. Base64 has no character autoescape would change.
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def render_consult_pdf(
    report: ConsultReport,
    templates_dir: Path,
    password: str | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
) -> bytes:
    """The consult report as PDF bytes; AES-256 encrypted when ``password`` is given.

    ``templates_dir`` is the project's templates/ folder (the template is pdf/consult.html.j2).
    Nothing is written to disk: the photos are inlined and the HTML and PDF travel by pipes.
    """
    if password is not None and not password:
        raise ValueError("an empty PDF password would not protect anything")
    photos = [PhotoView(p, photo_uri(p.jpeg), *_photo_size(p.jpeg)) for p in report.photos]
    try:
        html = render_consult_html(report, templates_dir, photos)
    except jinja2.TemplateError as exc:
        raise ReportError(f"consult template failed: {exc}") from exc
    pdf = html_to_pdf(html, timeout=timeout)
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
