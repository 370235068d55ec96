"""Reading the PDFs we render, and a local web server that records every request it gets (a
report's render must make none)."""

from __future__ import annotations

import io

from pypdf import PdfReader

from mailflow.reports.jail import Listener


def squash(text: str) -> str:
    """Text without any whitespace: pypdf splits words with tabs and lines where WebKit wrapped."""
    return "".join(text.split())


def pdf_text(data: bytes, password: str | None = None) -> str:
    reader = PdfReader(io.BytesIO(data))
    if password is not None:
        reader.decrypt(password)
    return "\n".join(page.extract_text() for page in reader.pages)


BEACON_BODY = b"BEACON-BODY"


def beacon(port: int = 0) -> Listener:
    """A local web server that records every request it gets (there must be none)."""
    return Listener(port, body=BEACON_BODY)
