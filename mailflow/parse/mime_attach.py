"""What a message carries besides its text: its attachments, and winmail.dat unpacked.

Each file gets a safe name and counts against the attachment limit. A winmail.dat (TNEF) is
replaced by the files and the text inside it, or kept as it came when nothing inside can be read:
nothing is dropped.
"""

from __future__ import annotations

from email.message import Message

from mailflow.parse.filenames import guess_type, safe_filename
from mailflow.parse.headers import decode_header_value, single_line
from mailflow.parse.mime_part import PartReader, raw_header
from mailflow.parse.types import Attachment, MimeLimits, ParseRejected
from mailflow.parse.winmail import read_tnef


class Attachments:
    """The files of one message, in message order, and the texts found inside winmail.dat."""

    def __init__(self, limits: MimeLimits, defects: list[str], reader: PartReader) -> None:
        self.limits = limits
        self.defects = defects
        self.reader = reader
        self.files: list[Attachment] = []
        self.tnef_texts: list[str] = []

    def attach(self, part: Message, ctype: str, filename: str, disposition: str) -> None:
        content_id = single_line(raw_header(part, "Content-ID"))
        description = single_line(
            decode_header_value(raw_header(part, "Content-Description"), self.defects)
        )
        self._add(
            filename,
            ctype,
            self.reader.payload(part),
            description=description,
            content_id=content_id,
            inline=disposition == "inline" or (not disposition and bool(content_id)),
        )

    def tnef(self, part: Message, ctype: str, filename: str) -> None:
        data = self.reader.payload(part)
        content = read_tnef(data, self.defects)
        if content is not None and not content.files and not content.text:
            self.defects.append("winmail.dat held nothing readable; kept as a file")
            content = None
        if content is None:  # unreadable: keep the blob itself, nothing is dropped
            self._add(filename or "winmail.dat", ctype, data)
            return
        for name, blob in content.files:
            self._add(name, guess_type(name), blob)
        self.tnef_texts.append(content.text)

    def _add(
        self,
        filename: str,
        ctype: str,
        data: bytes,
        description: str = "",
        content_id: str = "",
        inline: bool = False,
    ) -> None:
        if len(self.files) >= self.limits.max_attachments:
            raise ParseRejected(
                "too-many-attachments",
                f"The message has more than {self.limits.max_attachments} attachments; "
                f"the limit is {self.limits.max_attachments}.",
            )
        index = len(self.files) + 1
        self.files.append(
            Attachment(
                filename=safe_filename(filename, ctype, index),
                content_type=ctype,
                data=data,
                description=description,
                content_id=content_id,
                inline=inline,
            )
        )
