"""Page furniture for the consult report: the patient's name, date of birth, the case number
and "Page N of M" on every page, as a printed clinical record needs.

Debian's wkhtmltopdf (unpatched Qt) ignores --header-*/--footer-*, and where pages break is
only known once WebKit has laid the report out. So:

- the header (the patient's name may be in any script, so WebKit draws it with the report's
  fonts) is a strip on one extra page at the end of the same render
  (``pdf/_furniture.html.j2``); it is cut off, and its content becomes a Form XObject clipped
  to the strip (wkhtmltopdf paints every page white) and drawn into each page's top margin;
- the footer is ours alone and plain ASCII ("issued <time>", "Page N of M"), so it is drawn
  straight into each page with the PDF's standard Helvetica: no font to embed, no second
  render.

Both are appended to each page's content without parsing it: a few milliseconds a report, and
the text stays text that pypdf, poppler and screen readers read. Call this before encryption.
"""

from __future__ import annotations

import io

from pypdf import PageObject, PdfReader, PdfWriter
from pypdf.generic import (
    ArrayObject,
    DecodedStreamObject,
    DictionaryObject,
    FloatObject,
    NameObject,
    PdfObject,
)

PT_PER_MM = 72 / 25.4
# The report's page margins (mailflow.reports.jail._options): the header strip is laid out at
# the top of its page's content area and moved up into the margin from there.
MARGIN_MM = 12.0
STRIP_MM = 5.0  # the header strip's height (.furniture-strip in _report.css)
HEADER_TOP_MM = 3.5  # the header strip's top, from the page's top edge
FOOTER_RULE_MM = 8.0  # the footer's rule, from the page's bottom edge
FOOTER_BASELINE_MM = 5.0  # the footer's text
FOOTER_PT = 7.5
_HEADER = NameObject("/MailflowHeader")
_FONT, _BOLD = NameObject("/MailflowHelv"), NameObject("/MailflowHelvBold")
# Helvetica-Bold advance widths (its AFM, 1/1000 em) for what "Page N of M" is made of,
# to right-align it.
_BOLD_WIDTHS = {"P": 667, "a": 556, "g": 611, "e": 556, " ": 278, "o": 611, "f": 333,
                **dict.fromkeys("0123456789", 556)}


def add_furniture(pdf: bytes, footer: str) -> bytes:
    """``pdf`` (the report, then one page holding the header strip) as the report alone, with
    the header and ``footer`` (left) and "Page N of M" (right) on every page."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    total = len(writer.pages) - 1
    if total < 1:
        raise ValueError("the report has no header strip page after it")
    header = _header_form(writer, writer.pages[total])
    del writer.pages[total]
    fonts = {_FONT: _standard_font(writer, "Helvetica"),
             _BOLD: _standard_font(writer, "Helvetica-Bold")}
    for number, page in enumerate(writer.pages, start=1):
        _stamp(writer, page, {_HEADER: header}, fonts,
               _footer_ops(page, footer, f"Page {number} of {total}"))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _header_form(writer: PdfWriter, strip_page: PageObject) -> PdfObject:
    """The strip page's content as a Form XObject clipped to the strip and moved up."""
    height, width = float(strip_page.mediabox.top), float(strip_page.mediabox.right)
    strip_top = height - MARGIN_MM * PT_PER_MM  # where the strip is laid out
    shift = height - HEADER_TOP_MM * PT_PER_MM - strip_top
    contents = strip_page.get_contents()
    form = DecodedStreamObject()
    form.set_data(contents.get_data() if contents is not None else b"")
    form.update({
        NameObject("/Type"): NameObject("/XObject"),
        NameObject("/Subtype"): NameObject("/Form"),
        NameObject("/BBox"): _numbers(0, strip_top - STRIP_MM * PT_PER_MM, width, strip_top),
        NameObject("/Matrix"): _numbers(1, 0, 0, 1, 0, shift),
        NameObject("/Resources"): strip_page["/Resources"].get_object(),
    })
    return writer._add_object(form.flate_encode())  # pypdf has no public add for a new stream


def _standard_font(writer: PdfWriter, name: str) -> PdfObject:
    return writer._add_object(DictionaryObject({
        NameObject("/Type"): NameObject("/Font"),
        NameObject("/Subtype"): NameObject("/Type1"),
        NameObject("/BaseFont"): NameObject(f"/{name}"),
        NameObject("/Encoding"): NameObject("/WinAnsiEncoding"),
    }))


def _footer_ops(page: PageObject, left: str, right: str) -> bytes:
    width = float(page.mediabox.right)
    x0, x1 = MARGIN_MM * PT_PER_MM, width - MARGIN_MM * PT_PER_MM
    rule, base = FOOTER_RULE_MM * PT_PER_MM, FOOTER_BASELINE_MM * PT_PER_MM
    right_x = x1 - sum(_BOLD_WIDTHS.get(c, 556) for c in right) * FOOTER_PT / 1000
    return (
        f"0.6 w 0.725 0.769 0.812 RG {x0:.2f} {rule:.2f} m {x1:.2f} {rule:.2f} l S\n"
        f"BT 0.29 0.333 0.388 rg {_FONT} {FOOTER_PT} Tf {x0:.2f} {base:.2f} Td "
        f"{_pdf_string(left)} Tj ET\n"
        f"BT 0.106 0.141 0.188 rg {_BOLD} {FOOTER_PT} Tf {right_x:.2f} {base:.2f} Td "
        f"{_pdf_string(right)} Tj ET\n"
    ).encode("ascii")


def _pdf_string(text: str) -> str:
    """A PDF literal string in WinAnsi (the footer is our own text: ASCII and a middle dot)."""
    raw = text.encode("cp1252", "replace").decode("latin-1")
    escaped = raw.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return "(" + "".join(c if 32 <= ord(c) < 127 else f"\\{ord(c):03o}" for c in escaped) + ")"


def _stamp(writer: PdfWriter, page: PageObject, forms: dict[NameObject, PdfObject],
           fonts: dict[NameObject, PdfObject], footer: bytes) -> None:
    """Draw ``forms`` and ``footer`` over the page. Its own content is wrapped in q/Q first:
    wkhtmltopdf leaves its flipped coordinate system in force at the end of a page."""
    resources = DictionaryObject(page["/Resources"].get_object())  # a copy: may be shared
    for key, added in ((NameObject("/XObject"), forms), (NameObject("/Font"), fonts)):
        entries = DictionaryObject(resources.get(key, DictionaryObject()).get_object())
        entries.update(added)
        resources[key] = entries
    page[NameObject("/Resources")] = resources
    old = page["/Contents"].get_object()
    old_refs = list(old) if isinstance(old, ArrayObject) else [page.raw_get("/Contents")]
    draw = b"".join(b"q " + name.encode() + b" Do Q\n" for name in forms) + footer
    page[NameObject("/Contents")] = ArrayObject(
        [_stream(writer, b"q\n"), *old_refs, _stream(writer, b"\nQ\n" + draw)])


def _stream(writer: PdfWriter, data: bytes) -> PdfObject:
    stream = DecodedStreamObject()
    stream.set_data(data)
    return writer._add_object(stream)


def _numbers(*values: float) -> ArrayObject:
    return ArrayObject(FloatObject(v) for v in values)
