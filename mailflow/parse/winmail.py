"""Outlook's winmail.dat (application/ms-tnef): the files and text inside it."""

from __future__ import annotations

from dataclasses import dataclass

from tnefparse import TNEF

from mailflow.parse.charset import decode_bytes
from mailflow.parse.htmltext import html_to_text, tidy_text


@dataclass(frozen=True)
class TnefContent:
    files: tuple[tuple[str, bytes], ...]  # (file name as stored, data)
    text: str  # the message body, "" when TNEF carries none we can read (e.g. RTF only)


def is_tnef(content_type: str, filename: str) -> bool:
    return content_type in ("application/ms-tnef", "application/vnd.ms-tnef") or (
        filename.lower() == "winmail.dat"
    )


def _as_text(value: object, codepage: str, defects: list[str]) -> str:
    if isinstance(value, bytes):
        return decode_bytes(value.rstrip(b"\x00"), codepage, defects)
    return value.rstrip("\x00") if isinstance(value, str) else ""


def read_tnef(data: bytes, defects: list[str]) -> TnefContent | None:
    """The content of a TNEF blob, or None (with a defect) when it cannot be read."""
    try:
        # Checksums are skipped: they cost a pass over every byte and a bad one changes nothing.
        tnef = TNEF(data, do_checksum=False)
        codepage = tnef.codepage or "cp1252"
        files: list[tuple[str, bytes]] = []
        for attachment in tnef.attachments:
            if getattr(attachment, "embed", None) is not None:
                defects.append("winmail.dat holds an embedded Outlook message; kept as data")
            try:
                name = attachment.long_filename()
            except (UnicodeError, ValueError):
                name = ""
            files.append((_as_text(name, codepage, defects), bytes(attachment.data)))
        text = tidy_text(_as_text(tnef.body, codepage, defects))
        if not text and tnef.htmlbody:
            text = html_to_text(_as_text(tnef.htmlbody, codepage, defects), defects)
        if not text and getattr(tnef, "_rtfbody", None):
            defects.append("winmail.dat body is RTF only; its text was not extracted")
    except Exception as exc:  # tnefparse on hostile bytes raises anything from struct to assert
        defects.append(f"winmail.dat could not be read ({type(exc).__name__}); kept as a file")
        return None
    return TnefContent(files=tuple(files), text=text)
