"""wkhtmltopdf's jail: no network even with listeners on loopback, nothing of a report left on
disk after a SIGKILL, and no render at all when the jail cannot be proven. Synthetic data."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailflow.config import Config
from mailflow.reports import jail
from mailflow.reports.jail import Listener
from mailflow.reports.pdf import RendererUnsafe, html_to_pdf, render_consult_pdf
from mailflow.reports.sample import sample_report
from tests.conftest import ROOT
from tests.support.pdf import beacon, pdf_text, squash
from tests.support.procs import children

TEMPLATES = ROOT / "templates"


@pytest.fixture
def proxy_port_listener(monkeypatch: pytest.MonkeyPatch) -> Iterator[Listener]:
    """A listener on the port the closed proxy points at: 127.0.0.1:9 itself when we may bind
    it, else another port that the proxy is pointed at for the test."""
    try:
        listener = beacon(9)
    except OSError:  # not root, or taken
        listener = beacon(0)
        monkeypatch.setattr(jail, "CLOSED_PROXY", listener.url)
    yield listener
    listener.close()


@pytest.fixture
def unproven(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process has not proven a jail yet (it is remembered once proven)."""
    monkeypatch.setattr(jail, "_proven", None)
    monkeypatch.setattr(jail, "_failure_logged", False)


# --- network ------------------------------------------------------------------------------------


def test_listeners_on_the_proxy_port_and_another_port_get_no_request(
    proxy_port_listener: Listener,
) -> None:
    # Issue #11.4: with 127.0.0.1:9 open, the old closed-proxy block rendered http content.
    other = beacon()
    try:
        page = "<p>VISIBLE-TEXT</p>" + "".join(
            f'<img src="http://127.0.0.1:{port}/x.png">'
            f'<iframe src="http://127.0.0.1:{port}/frame.html"></iframe>'
            f'<link rel="stylesheet" href="http://127.0.0.1:{port}/x.css">'
            for port in (proxy_port_listener.port, other.port)
        )
        text = pdf_text(html_to_pdf(page))
    finally:
        other.close()
    assert "VISIBLE-TEXT" in text
    assert proxy_port_listener.requests == []
    assert other.requests == []
    assert "BEACON-BODY" not in squash(text)


def _network_sharing_namespaces() -> tuple[str, ...]:
    # A mount namespace only: it runs, but wkhtmltopdf keeps the machine's network.
    return ("--mount",) if os.geteuid() == 0 else ("--map-root-user", "--mount")


def test_a_jail_that_keeps_the_network_is_refused_and_logged_once(
    unproven: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(jail, "NAMESPACES", (_network_sharing_namespaces(),))
    caplog.set_level(logging.ERROR, logger="mailflow.reports.jail")
    with pytest.raises(RendererUnsafe, match="reached the network"):
        jail.proven_namespaces()
    with pytest.raises(RendererUnsafe):
        render_consult_pdf(sample_report(photos=0), TEMPLATES)
    # the jail's own error, once (other parts of a busy test process may log errors too)
    assert len([r for r in caplog.records
                if r.levelno == logging.ERROR and r.name == "mailflow.reports.jail"]) == 1
    assert jail._proven is None  # nothing was rendered, nothing remembered


def test_a_missing_unshare_is_refused(
    unproven: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = jail._tool

    def without_unshare(name: str) -> str:
        if name == "unshare":
            raise RendererUnsafe("unshare not found: wkhtmltopdf needs util-linux")
        return real(name)

    monkeypatch.setattr(jail, "_tool", without_unshare)
    with pytest.raises(RendererUnsafe, match="unshare not found"):
        jail.proven_namespaces()


def test_serve_refuses_to_start_when_the_jail_leaves_the_network(
    config: Config, bin_dir: Path
) -> None:
    # A stand-in unshare that drops --net: the start-up probe must notice and stop the service.
    fake = bin_dir / "unshare"
    fake.write_text(
        '#!/bin/sh\nwhile [ "$1" != "--" ]; do shift; done\n'
        f'exec /usr/bin/unshare {" ".join(_network_sharing_namespaces())} "$@"\n',
        encoding="utf-8",
    )
    fake.chmod(0o755)
    result = subprocess.run(
        [sys.executable, "-m", "mailflow", "--config", str(config.base_dir / "config.toml"),
         "worker"],
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "cannot be run without network access" in result.stderr
    assert "reached the network" in result.stderr
    assert "Traceback" not in result.stderr
    assert "mailflow is running" not in result.stdout


# --- nothing left on disk after SIGKILL ---------------------------------------------------------

RENDER = """
import sys
from dataclasses import replace
from pathlib import Path
from mailflow.reports.pdf import render_consult_pdf
from mailflow.reports.sample import sample_report
name = sys.stdin.readline().strip()
report = replace(sample_report(photos=4), patient_name=name)
sys.stdout.write(str(len(render_consult_pdf(report, Path(sys.argv[1])))))
"""


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _files_holding(needle: bytes, *roots: Path) -> list[Path]:
    """Regular files under ``roots`` whose bytes contain ``needle`` (unreadable ones skipped)."""
    hits = []
    for root in roots:
        for folder, _dirs, files in os.walk(root, onerror=lambda _e: None):
            for name in files:
                path = Path(folder) / name
                try:
                    if path.is_symlink() or not path.is_file():
                        continue
                    if needle in path.read_bytes():
                        hits.append(path)
                except OSError:
                    continue
    return hits


def _start_render(name: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-c", RENDER, str(TEMPLATES)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None
    proc.stdin.write(f"{name}\n".encode())
    proc.stdin.close()
    proc.stdin = None  # so that communicate() does not flush it
    return proc


def _renderer_holding(proc: subprocess.Popen[bytes], needle: bytes) -> int:
    """wkhtmltopdf's pid once the report is in a file it sees under its /tmp (mid-render)."""
    while proc.poll() is None:
        for pid in children(proc.pid):
            its_tmp = Path(f"/proc/{pid}/root/tmp")  # its own view, in its mount namespace
            if _comm(pid) == "wkhtmltopdf" and _files_holding(needle, its_tmp):
                return pid
    raise AssertionError(f"the render ended before it could be killed: {proc.stderr!r}")


def test_sigkill_mid_render_leaves_no_patient_data_in_any_temp_folder() -> None:
    # The name is the marker: it reaches the subprocess on stdin, never in a file of ours.
    name = f"Crashtest Patient{uuid.uuid4().hex}"
    proc = _start_render(name)
    try:
        renderer = _renderer_holding(proc, name.encode())
    finally:
        proc.kill()  # SIGKILL: no finally, no atexit in the rendering process
        proc.wait()
    os.kill(renderer, signal.SIGKILL)  # its own session: killed on its own, as the OOM killer
    # the next start-up: a new process renders another report, to the end
    after = _start_render(f"Nextstart Patient{uuid.uuid4().hex}")
    out, err = after.communicate()
    assert after.returncode == 0, err.decode()
    assert int(out) > 0
    roots = {Path("/tmp"), Path("/var/tmp"), Path("/dev/shm")}
    if os.environ.get("TMPDIR"):
        roots.add(Path(os.environ["TMPDIR"]))
    assert _files_holding(name.encode(), *sorted(r for r in roots if r.is_dir())) == []


def test_no_tmpfs_is_mounted_outside_a_new_mount_namespace(
    unproven: None, bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An unshare that ignores its options must not get the machine's /tmp hidden: the jail
    # checks its mount namespace first. A stand-in mount records whether it was called.
    called = bin_dir / "mount-called"
    for name, script in (
        ("unshare", 'while [ "$1" != "--" ]; do shift; done; shift; exec "$@"'),
        ("mount", f'echo "$@" > "{called}"; exit 1'),
    ):
        (bin_dir / name).write_text(f"#!/bin/sh\n{script}\n", encoding="utf-8")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    with pytest.raises(RendererUnsafe, match="no private mount namespace"):
        jail.proven_namespaces()
    assert not called.exists()
