"""A reply's new text, without the quoted original, the signature or "Sent from my iPhone"."""

from __future__ import annotations

import re

_QUOTED = re.compile(r"^\s*>")
# "On Tue, 5 Mar 2024 at 10:00, Jane <j@x.org> wrote:" and the usual translations.
_ATTRIBUTION = re.compile(
    r"^\s*(?:"
    r"On\s.{1,300}\swrote\s*:"
    r"|Le\s.{1,300}\sa\s+écrit\s*:"
    r"|Am\s.{1,300}\sschrieb\b.{0,200}"
    r"|El\s.{1,300}\sescribió\s*:"
    r"|Il\s.{1,300}\sha\s+scritto\s*:"
    r"|Op\s.{1,300}\sschreef\b.{0,200}"
    r"|Em\s.{1,300}\sescreveu\s*:"
    r")\s*$",
    re.IGNORECASE,
)
_ATTRIBUTION_START = re.compile(r"^\s*(On|Le|Am|El|Il|Op|Em)\s", re.IGNORECASE)
# "Jane Testpatient <jane@example.org> wrote:" (no date): only when quoted lines follow.
_BARE_ATTRIBUTION = re.compile(r"^\s*\S.{0,200}\s(wrote|writes)\s*:\s*$", re.IGNORECASE)
_SEPARATORS = re.compile(
    r"^\s*(?:"
    r"-{2,}\s*(?:Original Message|Ursprüngliche Nachricht|Message d'origine|Mensaje original"
    r"|Messaggio originale|Oorspronkelijk bericht)\s*-{2,}"
    r"|-{2,}\s*Forwarded message\s*-{2,}"
    r"|Begin forwarded message\s*:"
    r"|-{2,}\s*Original email message\s*-{2,}"
    r")\s*$",
    re.IGNORECASE,
)
_UNDERSCORES = re.compile(r"^\s*_{10,}\s*$")
_HEADER_LINE = re.compile(
    r"^\s*\**\s*(From|Sent|Date|To|Cc|Subject|Von|Gesendet|An|Betreff|Datum|De|Envoyé|À|Objet"
    r"|Enviado(?: el)?|Para|Asunto)\s*\**\s*:",
    re.IGNORECASE,
)
_DATE_LINE = re.compile(
    r"^\s*\**\s*(Sent|Date|Gesendet|Datum|Envoyé|Enviado(?: el)?|Fecha)\s*\**\s*:", re.IGNORECASE
)
_FROM_LINE = re.compile(r"^\s*\**\s*(From|Von|De)\s*\**\s*:", re.IGNORECASE)
_INLINE_HEADERS = re.compile(
    r"^\s*\**\s*(From|Von|De)\s*\**\s*:.*\b(Sent|Date|Gesendet|Envoyé|Enviado)\s*\**\s*:",
    re.IGNORECASE,
)
_SIGNATURE = re.compile(r"^-- ?$")
_DEVICE_LINE = re.compile(
    r"^\s*(Sent from my \S.*|Sent from (Mail|Outlook|Yahoo Mail|Gmail)\b.*"
    r"|Get Outlook for \S.*|Sent from Mail for Windows.*|Sent via .{1,40}"
    r"|Envoyé de mon \S.*|Von meinem \S.* gesendet|Enviado desde mi \S.*"
    r"|Inviato da(l mio)? \S.*)\s*$",
    re.IGNORECASE,
)


def _next_content(lines: list[str], start: int) -> int | None:
    """Index of the first non-blank line at or after `start`."""
    for i in range(start, len(lines)):
        if lines[i].strip():
            return i
    return None


def _is_header_block(lines: list[str], i: int) -> bool:
    """A "From:" line followed (within a few lines) by Sent:/Date:/To:/Subject: lines."""
    if _INLINE_HEADERS.match(lines[i]):
        return True
    if not _FROM_LINE.match(lines[i]):
        return False
    following = [line for line in lines[i + 1 : i + 8] if line.strip()][:2]
    if any(_DATE_LINE.match(line) for line in following):  # Lotus Notes: "Von:", "An", "Datum:"
        return True
    return len(following) == 2 and all(_HEADER_LINE.match(line) for line in following)


def _attribution_length(lines: list[str], i: int) -> int:
    """1 or 2 when an attribution ("On ... wrote:") starts at line i, else 0."""
    if _ATTRIBUTION.match(lines[i]):
        return 1
    if i + 1 < len(lines) and _ATTRIBUTION_START.match(lines[i]):
        joined = lines[i].rstrip() + " " + lines[i + 1].strip()
        if _ATTRIBUTION.match(joined):
            return 2
    return 0


def _cut_point(lines: list[str], i: int) -> bool:
    line = lines[i]
    if _SEPARATORS.match(line) or _SIGNATURE.match(line) or _is_header_block(lines, i):
        return True
    if _UNDERSCORES.match(line):
        nxt = _next_content(lines, i + 1)
        return nxt is not None and bool(_FROM_LINE.match(lines[nxt]))
    return False


def strip_quoted(text: str) -> str:
    """Keep what the sender wrote: drop quoted lines, the original below a reply header,
    the signature, and device footers at the end. Inline answers between quotes survive.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    i = 0
    while i < len(lines):
        if _cut_point(lines, i):
            break
        span = _attribution_length(lines, i)
        if not span and _BARE_ATTRIBUTION.match(lines[i]):
            nxt = _next_content(lines, i + 1)
            span = 1 if nxt is not None and _QUOTED.match(lines[nxt]) else 0
        if span:
            nxt = _next_content(lines, i + span)
            if nxt is None or not _QUOTED.match(lines[nxt]):
                break  # the original follows unquoted (HTML mail converted): cut it all
            i += span
            continue
        blank_run = not lines[i].strip() and kept and not kept[-1].strip()
        if not _QUOTED.match(lines[i]) and not blank_run:
            kept.append(lines[i])
        i += 1
    while kept and (not kept[-1].strip() or _DEVICE_LINE.match(kept[-1])):
        kept.pop()
    while kept and not kept[0].strip():
        kept.pop(0)
    return "\n".join(line.rstrip() for line in kept)
