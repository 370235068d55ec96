"""HTML mail bodies to plain text, and plain-text tidying shared by every body."""

from __future__ import annotations

import html
import re

from inscriptis import get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig

# "strict" keeps <div> lines flush left: Outlook and Gmail wrap every form line in a <div>,
# and indentation there would read as a continuation line to the form parser.
_CONFIG = ParserConfig(css=CSS_PROFILES["strict"])
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_BODY_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TRAILING_SPACE = re.compile(r"[ \t\u00a0]+\n")
_MANY_BLANKS = re.compile(r"\n{3,}")
_TAGS = re.compile(r"<[^>]*>")


def meta_charset(data: bytes) -> str:
    """The charset an HTML document declares in its first bytes, "" when none."""
    match = _META_CHARSET.search(data[:4096])
    return match.group(1).decode("ascii") if match else ""


def tidy_text(text: str) -> str:
    """Unix line ends, no control characters but tab and newline, at most one blank line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _BODY_CONTROLS.sub("", text)
    text = _TRAILING_SPACE.sub("\n", text + "\n")
    return _MANY_BLANKS.sub("\n\n", text).strip("\n")


def html_to_text(markup: str, defects: list[str]) -> str:
    try:
        text = get_text(markup, _CONFIG)
    except Exception:  # lxml/inscriptis on hostile markup: fall back to crude stripping
        defects.append("HTML body could not be converted cleanly; tags stripped")
        text = html.unescape(_TAGS.sub(" ", markup))
    return tidy_text(text.replace("\u00a0", " "))


def _quote_depth(line: str) -> int:
    return len(line) - len(line.lstrip(">"))


def unflow(text: str, delsp: bool) -> str:
    """RFC 3676: join the soft line breaks (lines ending in a space) of format=flowed text."""
    out: list[str] = []
    buf: str | None = None
    buf_depth = 0
    for line in text.split("\n"):
        depth = _quote_depth(line)
        content = line[depth:]
        if content.startswith(" "):  # space-stuffing
            content = content[1:]
        if buf is not None and depth != buf_depth:
            out.append(buf)
            buf = None
        if buf is None:
            buf, buf_depth = line[:depth] + (" " if depth else ""), depth
        if content.endswith(" ") and content != "-- ":
            buf += content[:-1] if delsp else content
            continue
        out.append(buf + content)
        buf = None
    if buf is not None:
        out.append(buf)
    return "\n".join(out)
