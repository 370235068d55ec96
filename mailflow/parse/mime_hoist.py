"""Long runs of base64 lines lifted out of a message before the stdlib parses it, put back after.

The stdlib's parser reads a message line by line in Python: a case's three 3 MB photos are
160,000 base64 lines and cost it ~0.2 s of CPU, more than decoding the photos. A line made of
the base64 alphabet alone (no ":", no space, no "-", not blank) can be no header, continuation,
boundary or separator: in every state of the parser it is content of whatever holds it (a
part's body, a preamble, an epilogue), and a run of such lines is read exactly as one such line
would be. So each long run is replaced by one placeholder line, the small skeleton is parsed,
and each placeholder is replaced by its run in whatever the parser put it in. If any
placeholder is not found exactly once there, the caller parses the message as it came.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message

# At least 64 lines in a row: short runs are not worth a placeholder.
_RUN = re.compile(rb"(?m)^(?:[A-Za-z0-9+/=]+\r?\n){64,}")


@dataclass(frozen=True)
class Hoisted:
    skeleton: bytes  # the message with each run replaced by a placeholder
    prefix: str  # every placeholder's start, found nowhere in the message itself
    runs: dict[str, str]  # placeholder -> the run it stands for (without its last line's EOL)


def hoist(raw: bytes) -> Hoisted | None:
    """The message with its long base64 runs replaced by placeholders; None when it has none."""
    found = list(_RUN.finditer(raw))
    if not found:
        return None
    prefix = _unused_prefix(raw)
    pieces: list[bytes] = []
    runs: dict[str, str] = {}
    at = 0
    view = memoryview(raw)  # decoded from the message's own buffer: no copy of the bytes first
    for i, match in enumerate(found):
        end = match.end() - (2 if raw[match.end() - 2 : match.end()] == b"\r\n" else 1)
        token = f"{prefix}{i:08d}"
        # as the parser's own str (ASCII; the parser surrogate-escapes only other bytes)
        runs[token] = str(view[match.start() : end], "ascii")
        pieces += [raw[at : match.start()], token.encode("ascii")]
        at = end  # the run's last line ending stays in the skeleton
    pieces.append(raw[at:])
    return Hoisted(b"".join(pieces), prefix, runs)


def _unused_prefix(raw: bytes) -> str:
    """A placeholder prefix (base64 alphabet only) that the message does not contain."""
    n = 0
    if b"MAILFLOWHOISTED" not in raw:
        return "MAILFLOWHOISTED0Z"
    while f"MAILFLOWHOISTED{n}Z".encode() in raw:
        n += 1
    return f"MAILFLOWHOISTED{n}Z"


def restore(msg: Message, hoisted: Hoisted) -> bool:
    """Put every run back where the parser put its placeholder; False when a placeholder is not
    found exactly once (then the caller must parse the original bytes instead)."""
    left = dict(hoisted.runs)
    for part in _parts(msg):
        for attr in ("_payload", "preamble", "epilogue"):
            value = getattr(part, attr, None)
            if not isinstance(value, str) or not value:
                continue
            changed = _put_back(value, left, hoisted.prefix)
            if changed is None:
                return False
            if changed is not value:
                setattr(part, attr, changed)
    return not left


def _put_back(value: str, left: dict[str, str], prefix: str) -> str | None:
    """`value` with its placeholders replaced; None when one is there twice or was already
    put back elsewhere (no run holds the prefix: the message does not)."""
    if value in left:  # the usual case: a part's whole body is one run
        return left.pop(value)
    if prefix not in value:
        return value
    for token in [t for t in left if t in value]:
        if value.count(token) != 1:
            return None
        value = value.replace(token, left.pop(token))
    return None if prefix in value else value


def _parts(msg: Message) -> Iterator[Message]:
    stack = [msg]
    while stack:  # iterative: the tree may be deeper than Python's recursion limit
        part = stack.pop()
        yield part
        payload = part._payload  # type: ignore[attr-defined]
        if isinstance(payload, list):
            stack.extend(p for p in payload if isinstance(p, Message))
