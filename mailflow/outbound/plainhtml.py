"""An email's plain text as real HTML for its HTML part: paragraphs that reflow on a phone,
lists where the text has `- ` or `1. ` lines, links as <a>, every character escaped.

Each email is written once, as text; this turns it into HTML so that no template is written
twice (ack and help keep their own HTML templates). Our templates wrap prose at about 75
characters, so a line that long is a soft wrap (joined with a space) and a shorter one is a
break the writer meant (a form line, a signature, a short answer): kept as <br>.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from markupsafe import Markup, escape

SOFT_WRAP = 60  # a line at least this long was wrapped by the writer, not ended
SIGNATURE = "\n--\n"
_ITEM = re.compile(
    r"^(?P<indent>[ \t]*)(?:(?P<bullet>[-*\u2022])|(?P<num>\d{1,3})[.)])\s+(?P<text>\S.*)$")
_LINK = re.compile(r"(?P<url>https?://[^\s<>\"']+)|(?P<mail>[\w.+-]+@[\w-]+(?:\.[\w-]+)+)")
_SHOUT = re.compile(r"^([A-Z][A-Z '’,()-]{3,}[A-Z])(?=[:.])")  # "NOT FOR EMERGENCIES." leads

P = "margin:0 0 12px;"
QUOTE = "margin:0 0 12px;padding:8px 12px;background:#f4f6f8;border-radius:6px;"
LIST = "margin:0 0 12px;padding-left:22px;"
ITEM = "margin:0 0 4px;"
FOOT = "margin:12px 0 0;font-size:13px;color:#5b6875;"
WRAP = "overflow-wrap:anywhere;word-wrap:break-word;"


@dataclass
class _Group:
    kind: str  # "p", "ul" or "ol"
    lines: list[str] = field(default_factory=list)  # a paragraph's lines
    items: list[list[str]] = field(default_factory=list)  # a list's items, each its lines
    indent: int = 0
    start: int = 1


def _linked(line: str) -> str:
    """One line escaped, its addresses and URLs made links."""
    out, at = [], 0
    for m in _LINK.finditer(line):
        target = m.group()
        trail = len(target) - len(target.rstrip(".,;:)"))  # a sentence's end is not the URL's
        end = m.end() - trail
        target = line[m.start():end]
        href = target if m["url"] else f"mailto:{target}"
        out.append(str(escape(line[at:m.start()])))
        out.append(f'<a href="{escape(href)}" style="{WRAP}">{escape(target)}</a>')
        at = end
    out.append(str(escape(line[at:])))
    html = "".join(out)
    return _SHOUT.sub(r"<strong>\1</strong>", html) if len(out) == 1 else html


def _is_link_only(line: str) -> bool:
    return _LINK.fullmatch(line.strip()) is not None


def _joined(lines: list[str]) -> str:
    """Lines of one paragraph: soft wraps joined, meant breaks kept."""
    html = _linked(lines[0])
    for prev, line in zip(lines, lines[1:], strict=False):
        soft = (len(prev) >= SOFT_WRAP and not prev.endswith(":")
                and not _is_link_only(prev) and not _is_link_only(line))
        html += (" " if soft else "<br>\n") + _linked(line)
    return html


def _groups(block: list[str]) -> list[_Group]:
    groups: list[_Group] = []
    for line in block:
        indent = len(line) - len(line.lstrip())
        last = groups[-1] if groups else None
        item = _ITEM.match(line)
        if item:
            kind = "ol" if item["num"] else "ul"
            if last is not None and last.kind == kind and len(item["indent"]) == last.indent:
                last.items.append([item["text"].strip()])
            else:
                groups.append(_Group(kind, items=[[item["text"].strip()]],
                                     indent=len(item["indent"]),
                                     start=int(item["num"] or 1)))
        elif last is not None and last.kind != "p" and indent > last.indent:
            last.items[-1].append(line.strip())  # an item's next line
        elif last is not None and last.kind == "p" and (indent >= 2) == (last.indent >= 2):
            last.lines.append(line.strip())
        else:
            groups.append(_Group("p", lines=[line.strip()], indent=indent))
    return groups


def _render(group: _Group) -> str:
    if group.kind == "p":
        style = QUOTE if group.indent >= 2 else P
        return f'<p style="{style}">{_joined(group.lines)}</p>'
    items = "".join(f'<li style="{ITEM}">{_joined(lines)}</li>' for lines in group.items)
    start = f' start="{group.start}"' if group.kind == "ol" and group.start != 1 else ""
    return f'<{group.kind}{start} style="{LIST}">{items}</{group.kind}>'


def _signature(text: str) -> str:
    """The signature's own lines, muted; the layout already names the service and says it is
    not for emergencies."""
    lines = [ln for ln in text.strip().splitlines()[1:] if ln.strip()]
    if not lines or "emergenc" in " ".join(lines).lower():
        return ""
    return f'<p style="{FOOT}">{_joined(lines)}</p>'


def plain_to_html(text: str) -> Markup:
    body, _, signature = text.replace("\r\n", "\n").partition(SIGNATURE)
    blocks = re.split(r"\n[ \t]*\n", body.strip("\n"))
    parts = [_render(g) for block in blocks if block.strip()
             for g in _groups(block.rstrip().splitlines())]
    parts.append(_signature(signature))
    return Markup(f'<div style="{WRAP}">' + "\n".join(p for p in parts if p) + "</div>")
