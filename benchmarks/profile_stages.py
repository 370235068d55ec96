"""The profile benchmark's stages: which stage a profiled function's own time belongs to.

A function is placed by its file (a module path) or, for a built-in, by its name; one that says
nothing (bytes.replace, a regex search, list.append) is placed where its callers are, in
proportion to the time each caller spent in it.
"""

from __future__ import annotations

import pstats

# (stage, patterns): the first stage with a pattern found in "file:function" wins
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base64 (and quoted-printable)", ("a2b_base64", "a2b_qp", "b64decode")),
    ("photo encode (review, thumbnail)", ("ImagingEncoder", "image_copies.py:_encode",
                                          "JpegImagePlugin.py:_save", "ImageFile.py:_save")),
    ("photo decode (and resize)", ("ImagingDecoder", "ImagingCore", "/PIL/", "PIL._imaging",
                                   "parse/image", "parse/images.py")),
    ("hashing (blob names, fingerprint)", ("_hashlib", "/hmac.py", "/hashlib.py",
                                           "parse/fingerprint.py", "store/blobs.py:blob_name")),
    ("encryption (AES-GCM, DKIM RSA)", ("AESGCM", "/cryptography/", "mailflow/crypto/",
                                        "builtins.pow", "/dkim/")),
    ("disk (write, fsync)", ("posix.fsync", "posix.write", "BufferedWriter", "posix.open",
                             "posix.rename", "posix.replace", "mailflow/store/", "/tempfile.py")),
    ("database", ("/sqlalchemy/", "sqlite3", "/psycopg", "mailflow/db/")),
    ("delivery (outbox to relay)", ("/smtplib.py", "outbound/delivery.py")),
    ("receive (SMTP door, TLS)", ("/aiosmtpd/", "/asyncio/", "/ssl.py", "_ssl.", "selectors",
                                  "/socket.py", "mailflow/intake/", "select.epoll")),
    ("MIME parse (stdlib email, parse/)", ("/email/", "mailflow/parse/")),
    ("workflow (routing, case, ack text)", ("mailflow/", "/jinja2/", "/markupsafe/")),
)
STAGES = tuple(stage for stage, _ in RULES)
# time in these is a wait, or the profiler's own; never a stage's work
IGNORED = ("acquire' of '_thread.lock", "'disable' of '_lsprof", "<built-in method _thread")

Func = tuple[str, int, str]


def _name(func: Func) -> str:
    filename, _line, name = func
    return f"{filename}:{name}"


def stage_of(func: Func) -> str | None:
    text = _name(func)
    for stage, patterns in RULES:
        if any(p in text for p in patterns):
            return stage
    return None


def by_stage(stats: pstats.Stats) -> dict[str, float]:
    """Seconds of own time per stage (and "other" for what no caller places)."""
    raw = stats.stats  # type: ignore[attr-defined]
    found: dict[str, float] = {}

    def place(func: Func, seconds: float, depth: int) -> None:
        stage = stage_of(func)
        if stage is None and depth < 6:
            callers = raw.get(func, (0, 0, 0, 0, {}))[4]
            spent = sum(c[2] for c in callers.values())
            if spent > 0:
                for caller, c in callers.items():
                    place(caller, seconds * c[2] / spent, depth + 1)
                return
        key = stage or "other"
        found[key] = found.get(key, 0.0) + seconds

    for func, (_cc, _nc, own, _ct, _callers) in raw.items():
        if own > 0 and not any(i in _name(func) for i in IGNORED):
            place(func, own, 0)
    return found
