"""`mailflow serve` as `make run` starts it: every part in one process, and a clean stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from sqlalchemy import select

from mailflow.app import App
from mailflow.config import Config
from mailflow.db.models import Consult, ProcessInstance
from tests.conftest import PASSWORD
from tests.support.cases import CASES, three_photos
from tests.support.db import answered_case
from tests.support.mail import FULL_FORM, case_email, submit, wait_until
from tests.support.procs import children
from tests.support.sink import RelaySink, free_port


def cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def niceness(pid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, pid)


def assert_readme_shows(banner: str) -> None:
    """The README's copy of the banner is the banner: the same lines in the same order, each
    the same up to its value where the value is this machine's (paths, ports, socket names)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("```\nmailflow is running", 1)[1].split("```", 1)[0]
    shown = ("mailflow is running" + block).strip().splitlines()
    printed = banner[banner.index("mailflow is running"):].split("stop with Ctrl-C")[0]
    printed_lines = [*printed.strip().splitlines(), "  stop with Ctrl-C"]
    label = re.compile(r"^\s*([a-zA-Z ]+:)")
    assert [label.match(line).group(1) if label.match(line) else line for line in shown] == [
        label.match(line).group(1) if label.match(line) else line for line in printed_lines]
    assert shown[0] == printed_lines[0]  # which parts run


def test_serve_runs_every_part_and_stops_cleanly(
    app: App, config: Config, sink: RelaySink, provider: str
) -> None:
    smtp_port, web_port = free_port(), free_port()
    log = config.base_dir / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailflow", "--config", str(config.base_dir / "config.toml"),
             "serve"],
            env={**os.environ, "MAILFLOW_SMTP__PORT": str(smtp_port),
                 "MAILFLOW_WEB__PORT": str(web_port)},
            stdout=out, stderr=out,
        )
    try:
        wait_until(lambda: "stop with Ctrl-C" in log.read_text(), 60, "serve to start")
        banner = log.read_text()
        assert "(bus, smtp, worker, reports, outbox, scheduler, web)" in banner
        assert_readme_shows(banner)
        assert "event bus:" in banner
        assert f"http://127.0.0.1:{web_port}/" in banner
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/healthz", timeout=10) as r:
            assert r.status == 200
        # the photo decoders yield the CPU to the SMTP door and the web
        pool = [pid for pid in children(proc.pid) if b"spawn_main" in cmdline(pid)]
        assert 1 <= len(pool) <= config.intake.workers  # started as work needs them
        # relative to the server's own niceness: the suite itself may run under `nice`
        assert {niceness(pid) - niceness(proc.pid) for pid in pool} == {
            min(config.intake.worker_nice, 19 - niceness(proc.pid))}
        assert niceness(proc.pid) == os.getpriority(os.PRIO_PROCESS, 0)
        # no core file can copy the process's memory (keys, patients' data) to disk
        for pid in (proc.pid, *pool):
            limits = Path(f"/proc/{pid}/limits").read_text()
            assert re.search(r"^Max core file size\s+0\s+0\s", limits, re.M), limits
        code, _ = submit(smtp_port, provider, PASSWORD,
                         case_email(provider, CASES, FULL_FORM, three_photos()))
        assert code == 250
        ack = sink.wait_for(provider, timeout=60)[0]
        assert "received" in str(ack.message["Subject"])
    finally:
        proc.send_signal(signal.SIGTERM)
        returncode = proc.wait(60)
    output = log.read_text()
    assert returncode == 0, output
    assert "Traceback" not in output, output


def test_the_reports_part_runs_alone_and_issues_a_pending_report(
    app: App, config: Config, sink: RelaySink, provider: str, dermatologists: tuple[str, str]
) -> None:
    consult_id = answered_case(app, provider, dermatologists[0])
    log = config.base_dir / "reports.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailflow", "--config", str(config.base_dir / "config.toml"),
             "reports"],
            stdout=out, stderr=out,
        )
    try:
        wait_until(lambda: "stop with Ctrl-C" in log.read_text(), 60, "reports to start")
        assert "mailflow is running (reports)" in log.read_text()
        wait_until(lambda: pdf_sha(app, consult_id), 60, "the report to be issued")
        assert sink.to(provider) == []  # queued for the outbox, which does not run here
    finally:
        proc.send_signal(signal.SIGTERM)
        returncode = proc.wait(60)
    assert returncode == 0, log.read_text()
    with app.sessions() as session:
        assert session.execute(select(ProcessInstance)).first() is None  # unregistered


def pdf_sha(app: App, consult_id: int) -> str:
    with app.sessions() as session:
        consult = session.get(Consult, consult_id)
        assert consult is not None
        return consult.pdf_sha


def test_serve_names_the_parts_it_knows_when_given_another(config: Config) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mailflow", "--config", str(config.base_dir / "config.toml"),
         "serve", "--parts", "worker,outbox,mailer"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "no such part: mailer; the parts are bus, smtp, imap, worker, reports" in result.stderr
