"""The identity of a message for once-only processing.

The same message delivered twice has the same bytes except for the trace headers that each
hop prepends (Received, Return-Path, Delivered-To...). So the fingerprint is the SHA-256 of the
message without its leading trace headers: a redelivery matches, while two different messages
that share a Message-ID (or have none) differ in their bytes and stay two.
"""

from __future__ import annotations

import hashlib
import re

_TRACE = re.compile(
    rb"^(received|return-path|delivered-to|x-original-to|x-envelope-from|x-envelope-to|"
    rb"authentication-results|arc-[a-z-]+|x-spam-[a-z-]+|x-virus-[a-z-]+|x-mailflow-[a-z-]+):",
    re.IGNORECASE,
)


def fingerprint(raw: bytes) -> str:
    pos = 0
    length = len(raw)
    while pos < length:
        end = raw.find(b"\n", pos)
        if end < 0:
            break
        line = raw[pos : end + 1]
        if not _TRACE.match(line):
            break
        pos = end + 1
        # continuation lines of a folded trace header belong to it
        while pos < length and raw[pos : pos + 1] in (b" ", b"\t"):
            end = raw.find(b"\n", pos)
            pos = length if end < 0 else end + 1
    # CRLF and LF versions of one message are the same message; normalise in chunks, not by
    # copying the whole (possibly 40 MB) message
    digest = hashlib.sha256()
    view = memoryview(raw)
    chunk = 1 << 20
    start = pos
    while start < length:
        end = min(start + chunk, length)
        if end < length and raw[end - 1 : end] == b"\r":
            end += 1  # keep a CR with its LF
        digest.update(bytes(view[start:end]).replace(b"\r\n", b"\n"))
        start = end
    return digest.hexdigest()
