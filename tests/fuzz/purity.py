"""parse/ is pure: while a parse call runs, no file is written or read (other than Python's own
modules being imported), no socket opened, no process started, no database touched.

An audit hook (PEP 578) sees every such operation in every thread, so the photo threads of
analyze() are watched too. Hooks cannot be removed: this one is installed once and does
nothing outside a `pure()` block.
"""

from __future__ import annotations

import sys
import sysconfig
from collections.abc import Iterator
from contextlib import contextmanager

_FORBIDDEN_PREFIXES = (
    "socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
    "os.remove", "os.rename", "os.mkdir", "os.rmdir", "os.truncate", "os.chmod", "os.chown",
    "os.link", "os.symlink", "os.listdir", "os.scandir", "shutil.", "sqlite3.", "urllib.",
    "http.client.", "ftplib.", "smtplib.", "imaplib.", "poplib.", "ctypes.dlopen",
)
# Where Python's own modules come from: a lazy import (a codec for a rare charset, a Pillow
# plugin) reads them, and that is loading code, not I/O of the parser's.
_CODE_DIRS = tuple({p for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                *sysconfig.get_paths().values(), *sys.path) if p})

_watching = False
_seen: list[str] = []


def _compiled_code(args: tuple[object, ...]) -> bool:
    """Python caching a module it imported for the first time (__pycache__/*.pyc: made, written,
    renamed into place): the same loading of code, not the parser's I/O."""
    return any(isinstance(a, str | bytes) and "__pycache__" in str(a) for a in args[:2])


def _hook(event: str, args: tuple[object, ...]) -> None:
    if not _watching:
        return
    if event in ("open", "os.mkdir", "os.rename", "os.replace") and _compiled_code(args):
        return
    if event in ("os.listdir", "os.scandir") and str(args[0] if args else "").startswith(
            _CODE_DIRS):
        return  # the import system listing a folder of modules
    if event == "open":
        path, mode = args[0], args[1]
        if isinstance(path, int):
            return  # a file object over a descriptor whose own opening was seen and judged
        reading_code = isinstance(path, str) and path.startswith(_CODE_DIRS) and (
            mode is None or "r" in str(mode))
        if not reading_code:
            _seen.append(f"open {path!r} {mode!r}")
    elif event.startswith(_FORBIDDEN_PREFIXES):
        _seen.append(event)


sys.addaudithook(_hook)


@contextmanager
def pure() -> Iterator[None]:
    """Fail the test if the block does I/O."""
    global _watching
    _seen.clear()
    _watching = True
    try:
        yield
    finally:
        _watching = False
    assert not _seen, f"parse/ did I/O: {_seen[:5]}"
