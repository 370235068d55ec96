"""Page furniture for the consult report: the patient's name, date of birth, the case number
and "Page N of M" on every page, as a printed clinical record needs.

Debian's wkhtmltopdf (unpatched Qt) ignores --header-*/--footer-*, and a page break cannot be
known before WebKit lays the report out. So the report is rendered first and its pages
counted; then one small render of ``pdf/furniture.html.j2`` (same renderer, same lock-down)
makes a header strip and a footer strip for each page, each on a page of its own; and each
strip is stamped onto its report page as a Form XObject, clipped to the strip (wkhtmltopdf
paints every page white) and moved into the page's margin. Stamping appends to the page's
content without parsing it, so it costs a few milliseconds; the second render costs one
wkhtmltopdf start (~80 ms). The text stays text: pypdf and screen readers read it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import jinja2
from pypdf import PdfReader, PdfWriter
from pypdf.generic import (
    ArrayObject,
    DecodedStreamObject,
    DictionaryObject,
    FloatObject,
    NameObject,
    PdfObject,
)

TEMPLATE = "pdf/furniture.html.j2"
_PT_PER_MM = 72 / 25.4
# The report's page margins (mailflow.reports.pdf._options): each strip is rendered at the top
# of the content area and moved out into the margin. tests/unit/reports checks where it lands.
MARGIN_MM = 12.0
STRIP_MM = 5.0  # the template's strip height
HEADER_TOP_MM = 3.5  # header strip: from the page's top edge
FOOTER_BOTTOM_MM = 3.5  # footer strip: from the page's bottom edge
_HEAD, _FOOT = NameObject("/MailflowHeader"), NameObject("/MailflowFooter")


@dataclass(frozen=True)
class Furniture:
    """What every page carries (PHI: the furniture render stays in the private folder)."""

    patient_name: str
    date_of_birth: str
    case_number: str
    issued: str  # already formatted in the report's time zone


def furniture_html(env: jinja2.Environment, furniture: Furniture, pages: int) -> str:
    return env.get_template(TEMPLATE).render(f=furniture, pages=pages)


def add_furniture(
    pdf: bytes,
    furniture: Furniture,
    env: jinja2.Environment,
    render: Callable[[str], bytes],
) -> bytes:
    """``pdf`` with a header and a footer stamped on each page; ``render`` turns the furniture
    HTML into PDF bytes (the report's own renderer, so the strips match its page size)."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    pages = len(writer.pages)
    strips = PdfReader(io.BytesIO(render(furniture_html(env, furniture, pages)))).pages
    if len(strips) != 2 * pages:
        raise ValueError(f"furniture: {len(strips)} strips for {pages} pages")
    for number, page in enumerate(writer.pages):
        height = float(page.mediabox.top)
        strip_top = height - MARGIN_MM * _PT_PER_MM  # where the renderer puts each strip
        head = _form(writer, strips[2 * number], strip_top,
                     height - HEADER_TOP_MM * _PT_PER_MM - strip_top)
        foot = _form(writer, strips[2 * number + 1], strip_top,
                     (FOOTER_BOTTOM_MM + STRIP_MM) * _PT_PER_MM - strip_top)
        _stamp(writer, page, {_HEAD: head, _FOOT: foot})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _form(writer: PdfWriter, strip: PdfObject, strip_top: float, shift: float) -> PdfObject:
    """The strip's page as a Form XObject: clipped to the strip, moved by ``shift`` points."""
    page = strip.get_object()
    contents = page.get_contents()
    form = DecodedStreamObject()
    form.set_data(contents.get_data() if contents is not None else b"")
    width = float(page.mediabox.right)
    form.update({
        NameObject("/Type"): NameObject("/XObject"),
        NameObject("/Subtype"): NameObject("/Form"),
        NameObject("/BBox"): ArrayObject(FloatObject(v) for v in (
            0, strip_top - STRIP_MM * _PT_PER_MM, width, strip_top)),
        NameObject("/Matrix"): ArrayObject(FloatObject(v) for v in (1, 0, 0, 1, 0, shift)),
        NameObject("/Resources"): page["/Resources"].clone(writer),
    })
    return writer._add_object(form.flate_encode())  # pypdf has no public add for a new stream


def _stamp(writer: PdfWriter, page: PdfObject, forms: dict[NameObject, PdfObject]) -> None:
    """Draw ``forms`` over the page: its own content is wrapped in q/Q first, because
    wkhtmltopdf leaves its flipped coordinate system in force at the end of a page."""
    page = page.get_object()
    resources = DictionaryObject(page["/Resources"].get_object())  # a copy: may be shared
    xobjects = DictionaryObject(resources.get("/XObject", DictionaryObject()).get_object())
    xobjects.update(forms)
    resources[NameObject("/XObject")] = xobjects
    page[NameObject("/Resources")] = resources
    old = page["/Contents"].get_object()
    old_refs = list(old) if isinstance(old, ArrayObject) else [page.raw_get("/Contents")]
    draw = b"".join(b"q " + name.encode() + b" Do Q\n" for name in forms)
    page[NameObject("/Contents")] = ArrayObject(
        [_stream(writer, b"q\n"), *old_refs, _stream(writer, b"\nQ\n" + draw)])


def _stream(writer: PdfWriter, data: bytes) -> PdfObject:
    stream = DecodedStreamObject()
    stream.set_data(data)
    return writer._add_object(stream)
