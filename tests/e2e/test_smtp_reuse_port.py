"""[smtp] reuse_port: two `mailflow smtpd` processes listen on one port and both take mail
(without it the second stops at start: the address is in use)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mailflow.app import App
from mailflow.config import Config
from tests.conftest import PASSWORD
from tests.support.cases import CASES
from tests.support.mail import FULL_FORM, case_email, submit, wait_until
from tests.support.sink import free_port


@contextmanager
def smtpd(config: Config, port: int, log: Path, reuse: bool) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailflow", "--config", str(config.base_dir / "config.toml"),
             "smtpd"],
            env={**os.environ, "MAILFLOW_SMTP__PORT": str(port),
                 "MAILFLOW_SMTP__REUSE_PORT": "true" if reuse else "false"},
            stdout=out, stderr=out,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def started(proc: subprocess.Popen[bytes], log: Path) -> bool:
    wait_until(lambda: "stop with Ctrl-C" in log.read_text() or proc.poll() is not None, 60,
               "smtpd to start or stop")
    return proc.poll() is None


def test_two_smtpd_processes_share_the_port_and_both_accept(
    app: App, config: Config, provider: str
) -> None:
    port = free_port()
    logs = [config.base_dir / "smtpd-1.log", config.base_dir / "smtpd-2.log"]
    with smtpd(config, port, logs[0], reuse=True) as one:
        assert started(one, logs[0]), logs[0].read_text()
        with smtpd(config, port, logs[1], reuse=True) as two:  # without: "address in use"
            assert started(two, logs[1]), logs[1].read_text()
            _send_until_both_accepted(port, provider, logs)


def _send_until_both_accepted(port: int, provider: str, logs: list[Path]) -> None:
    # the kernel spreads new connections over both listeners by their source port
    for _ in range(40):
        code, _reply = submit(port, provider, PASSWORD, case_email(provider, CASES, FULL_FORM))
        assert code == 250
        if all("accepted message" in log.read_text() for log in logs):
            break
    assert all("accepted message" in log.read_text() for log in logs)
