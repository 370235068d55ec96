"""wkhtmltopdf in a jail: no network at all, and nothing of the report on any disk.

Security (DESIGN §6), as measured on Debian's wkhtmltopdf 0.12.6 (unpatched Qt):

- Network: wkhtmltopdf has no switch to turn it off, and a closed-port ``--proxy`` only holds
  while nothing listens on that port. So it runs in an empty network namespace (``unshare
  --net``: only a loopback that is down, no route anywhere). As root that needs no user
  namespace; unprivileged, ``--map-root-user`` makes one. Which works is found, and *proven*,
  once per process: a probe render whose page and proxy both point at an HTTP listener the
  probe itself runs must reach it with no request. If no jail passes, nothing is rendered
  (``RendererUnsafe``) and ``mailflow serve`` refuses to start.
  The closed proxy and ``--proxy-hostname-lookup`` stay as a second wall: no DNS query either.
- Disk: the HTML goes in on stdin and the PDF comes out on stdout, photos are data URIs. But
  wkhtmltopdf copies stdin to ``$TMPDIR/wktemp-*.html``, so the jail also has its own mount
  namespace with a fresh tmpfs on /tmp (and TMPDIR, HOME, XDG_RUNTIME_DIR there). The tmpfs
  lives in memory and vanishes with the last process in the namespace, even after SIGKILL.
- JavaScript off; ``--disable-local-file-access`` with no ``--allow``: the page needs no file
  (``--enable-local-file-access`` would make every file on the machine readable).
- A blocked resource makes wkhtmltopdf exit 1 ("due to network error") with a complete PDF;
  that exit is accepted when the PDF is whole.

pdfkit builds the wkhtmltopdf command line (and validates the binary); we run it ourselves
because pdfkit has no timeout and treats the exit above as a failure.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pdfkit
from pdfkit.configuration import Configuration

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
# Port 9 (discard) on loopback, a second wall behind the namespace (where it is unreachable).
CLOSED_PROXY = "http://127.0.0.1:9"
# A cap, not a reservation: the tmpfs only holds wkhtmltopdf's copy of the HTML (photos inline).
TMPFS_SIZE = "512m"
# Namespaces tried in order: root needs no user namespace; anyone else gets one.
NAMESPACES: tuple[tuple[str, ...], ...] = (
    ("--net", "--mount"),
    ("--map-root-user", "--net", "--mount"),
)
# Run inside the namespaces by sh ($0: mount, $1: size, $2: our mount namespace): a private
# /tmp, then wkhtmltopdf in place of the shell. The tmpfs is mounted only in a mount namespace
# that is provably not ours: an unshare that ignored --mount must not hide the machine's /tmp.
_INSIDE = (
    'ns=$(readlink /proc/self/ns/mnt) && [ -n "$ns" ] && [ "$ns" != "$2" ]'
    ' || { echo "no private mount namespace: /tmp left alone" >&2; exit 1; }; '
    '"$0" -t tmpfs -o "mode=0700,size=$1" mailflow-render /tmp && cd /tmp && shift 2 && exec "$@"'
)
_STDERR_LIMIT = 600


class ReportError(Exception):
    """The PDF could not be produced (wkhtmltopdf missing, failed, or too slow)."""


class RendererUnsafe(ReportError):
    """wkhtmltopdf cannot be run with its network provably cut off; nothing is rendered."""


# --- the command --------------------------------------------------------------------------------


def _wkhtmltopdf() -> Configuration:
    path = shutil.which("wkhtmltopdf")
    if path is None:
        raise ReportError(
            "wkhtmltopdf not found on PATH: install it (Debian: apt-get install wkhtmltopdf)"
        )
    return _configuration(path)


@lru_cache(maxsize=4)
def _configuration(path: str) -> Configuration:
    try:
        # environ is replaced per call (see _environment); this one only satisfies pdfkit.
        return Configuration(wkhtmltopdf=path, environ={"PATH": os.defpath})
    except OSError as exc:
        raise ReportError(f"wkhtmltopdf at {path} is not usable: {exc}") from exc


def options(proxy: str | None = None) -> dict[str, str | None]:
    # No --no-outline: unpatched Qt has no outlines and prints a warning for the switch.
    return {
        "--quiet": None,
        "--disable-javascript": None,
        # The default 200 ms wait is for scripts, which are off; 0 saves ~200 ms per render.
        "--javascript-delay": "0",
        "--disable-local-file-access": None,
        "--proxy": proxy or CLOSED_PROXY,
        "--proxy-hostname-lookup": None,  # no DNS query either
        "--encoding": "utf-8",
        "--page-size": "Letter",
        "--margin-top": "12mm",
        "--margin-bottom": "12mm",
        "--margin-left": "12mm",
        "--margin-right": "12mm",
        "--load-error-handling": "ignore",
        "--load-media-error-handling": "ignore",
    }


def wkhtmltopdf_command(proxy: str | None = None) -> list[str]:
    """wkhtmltopdf reading the HTML on stdin and writing the PDF on stdout."""
    kit = pdfkit.PDFKit("", "string", options=options(proxy), configuration=_wkhtmltopdf())
    return kit.command()  # [..., "-", "-"]


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        raise RendererUnsafe(f"{name} not found: wkhtmltopdf needs util-linux to run offline")
    return path


def jailed(namespaces: tuple[str, ...], command: list[str]) -> list[str]:
    """``command`` in fresh ``namespaces``, on a private in-memory /tmp."""
    unshare, sh, mount = _tool("unshare"), _tool("sh"), _tool("mount")
    ours = os.readlink("/proc/self/ns/mnt")
    return [unshare, *namespaces, "--", sh, "-c", _INSIDE, mount, TMPFS_SIZE, ours, *command]


def _environment() -> dict[str, str]:
    # Minimal on purpose: no *_proxy variables, no display; everything Qt or fontconfig might
    # write goes to the private tmpfs (Qt wants its runtime dir 0700: the mount is).
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "XDG_RUNTIME_DIR": "/tmp",
        "LANG": "C.UTF-8",
        "QT_QPA_PLATFORM": "offscreen",
    }


# --- running it ---------------------------------------------------------------------------------


def _pdf_is_whole(data: bytes) -> bool:
    return data.startswith(b"%PDF-") and b"%%EOF" in data[-1024:]


def run(argv: list[str], html: str, timeout: float) -> bytes:
    """Feed ``html`` to ``argv`` (a jailed wkhtmltopdf) and return the PDF it prints."""
    try:
        # Own session, so a timeout kills the whole process group, not just the parent.
        proc = subprocess.Popen(
            argv,
            cwd="/",
            env=_environment(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise ReportError(f"cannot start wkhtmltopdf: {exc}") from exc
    try:
        data, err = proc.communicate(html.encode("utf-8"), timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        _kill_group(proc)
        raise ReportError(f"wkhtmltopdf took longer than {timeout:g} s") from exc
    except BaseException:
        _kill_group(proc)
        raise
    stderr = err.decode("utf-8", "replace").strip()[-_STDERR_LIMIT:]
    if proc.returncode == 0 and _pdf_is_whole(data):
        return data
    # A blocked or failed sub-resource: exit 1 with a whole PDF.
    if proc.returncode == 1 and "network error" in stderr and _pdf_is_whole(data):
        log.info("wkhtmltopdf: a resource was blocked (%s)", stderr.splitlines()[-1])
        return data
    raise ReportError(f"wkhtmltopdf failed (exit {proc.returncode}): {stderr or 'no output'}")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def html_to_pdf(html: str, *, timeout: float = DEFAULT_TIMEOUT) -> bytes:
    """Render ``html`` with wkhtmltopdf in its proven jail: no network, no file, no disk."""
    namespaces = proven_namespaces(timeout)
    return run(jailed(namespaces, wkhtmltopdf_command()), html, timeout)


# --- the proof ----------------------------------------------------------------------------------


class Listener:
    """A local HTTP server that records every request it gets (the probe wants none; the tests
    use it as their beacon). `body` is what it answers, to find in a PDF that reached it."""

    def __init__(self, port: int = 0, body: bytes = b"PROBE-REACHED") -> None:
        self.requests: list[str] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                listener.requests.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def _listening() -> Iterator[Listener]:
    listener = Listener()
    try:
        # The detector must detect: a request of our own first (never through a *_proxy).
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with direct.open(f"{listener.url}/self-check", timeout=5) as resp:
            resp.read()
        if listener.requests != ["/self-check"]:
            raise RendererUnsafe("the network probe's own listener does not record requests")
        listener.requests.clear()
        yield listener
    finally:
        listener.close()


def _probe(namespaces: tuple[str, ...], timeout: float) -> str | None:
    """None if this jail renders and cuts the network off; else why not."""
    with _listening() as listener:
        # The proxy is the listener too: outside a jail, every request would reach it.
        page = (
            f'<p>network probe</p><img src="{listener.url}/probe.png">'
            f'<iframe src="{listener.url}/frame.html"></iframe>'
        )
        try:
            run(jailed(namespaces, wkhtmltopdf_command(proxy=listener.url)), page, timeout)
        except ReportError as exc:
            return str(exc)
        if listener.requests:
            return f"the page reached the network ({len(listener.requests)} requests)"
    return None


_lock = threading.Lock()
_proven: tuple[str, ...] | None = None
_failure_logged = False


def proven_namespaces(timeout: float = DEFAULT_TIMEOUT) -> tuple[str, ...]:
    """The unshare options under which wkhtmltopdf provably has no network (once a process).

    Raises ``RendererUnsafe`` (logged once) when no jail works; a missing wkhtmltopdf is the
    plain ``ReportError`` it always was. Failures are not remembered: a fixed host recovers.
    """
    global _proven, _failure_logged
    with _lock:
        if _proven is not None:
            return _proven
        _wkhtmltopdf()  # its own clear error first
        reasons = []
        for namespaces in NAMESPACES:
            reason = _probe(namespaces, timeout)
            if reason is None:
                _proven = namespaces
                log.info("wkhtmltopdf runs with no network (unshare %s)", " ".join(namespaces))
                return namespaces
            reasons.append(f"unshare {' '.join(namespaces)}: {reason}")
        unsafe = RendererUnsafe(
            "wkhtmltopdf cannot be run without network access, so no report is rendered. "
            "It needs unshare (util-linux) and either root or unprivileged user namespaces "
            "(sysctl kernel.unprivileged_userns_clone=1; on Ubuntu also "
            "kernel.apparmor_restrict_unprivileged_userns=0). Tried: " + "; ".join(reasons)
        )
        if not _failure_logged:
            _failure_logged = True
            log.error("%s", unsafe)
        raise unsafe
