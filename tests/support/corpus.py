"""The real-mail corpus (real clients' messages, kept outside the repository in
../shared/corpus/real-mail/): where it is, and what a test does when it is not there.

On a fresh clone without it the corpus tests skip, saying where to get it, so `make test`
passes anywhere; when the environment variable CI is set (.ci/run sets it) a missing corpus
fails them instead, so CI can never go green by skipping.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "real-mail"
WHERE = ("the real-mail corpus is not at {corpus}: put the project's shared/ folder beside "
         "this clone (shared/corpus/real-mail/*.eml; each file's public source is listed in "
         "shared/corpus/real-mail/SOURCES.md)")
FROM_LINE = re.compile(rb"^From:.*(\r?\n[ \t].*)*$", re.IGNORECASE | re.MULTILINE)


def corpus_messages() -> list[Path]:
    """Every .eml of the corpus; skips the calling test if there are none (fails under CI)."""
    found = sorted(CORPUS.glob("*.eml")) if CORPUS.is_dir() else []
    if not found:
        where = WHERE.format(corpus=CORPUS)
        if os.environ.get("CI"):
            pytest.fail(f"{where} (CI is set, so this fails instead of skipping)")
        pytest.skip(where)
    return found


def as_provider(raw: bytes, provider: str) -> bytes:
    """The message as the provider's client would send it: From: is their own address."""
    head_end = raw.find(b"\n\n") if b"\r\n\r\n" not in raw else raw.find(b"\r\n\r\n")
    head, body = raw[:head_end], raw[head_end:]
    new_from = f"From: {provider}".encode()
    head, count = FROM_LINE.subn(lambda _m: new_from, head, count=1)
    if not count:
        head = new_from + b"\r\n" + head
    return head + body
