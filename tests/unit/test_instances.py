"""When a process instance counts as gone: its pid on this machine, its heartbeat elsewhere."""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine

from mailflow.config import ConfigError, load_config
from mailflow.db.models import ProcessInstance, utcnow
from mailflow.instances import Identity, is_gone, this_process
from tests.support.mail import wait_until

DEAD_AFTER = 60.0


def instance(here: Identity, **changes: object) -> ProcessInstance:
    values: dict[str, object] = {
        "id": "x" * 32, "host": here.host, "machine": here.machine, "pid": here.pid,
        "pid_start": here.pid_start, "started_at": utcnow(), "heartbeat_at": utcnow(),
    }
    values.update(changes)
    return ProcessInstance(**values)


def test_a_running_process_on_this_machine_is_not_gone() -> None:
    here = this_process()
    assert here.machine and here.pid_start > 0  # Linux: /proc tells
    assert not is_gone(instance(here), here, utcnow(), DEAD_AFTER)
    # its heartbeat does not matter here: a busy worker that is alive keeps its claims
    stale = instance(here, heartbeat_at=utcnow() - timedelta(days=1))
    assert not is_gone(stale, here, utcnow(), DEAD_AFTER)


def test_a_pid_that_ended_or_was_reused_is_gone() -> None:
    here = this_process()
    ended = subprocess.Popen(["true"])
    ended.wait()
    assert is_gone(instance(here, pid=ended.pid), here, utcnow(), DEAD_AFTER)
    # our own pid, but started at another time: a new process that got the old pid
    reused = instance(here, pid_start=here.pid_start - 1)
    assert is_gone(reused, here, utcnow(), DEAD_AFTER)


def test_a_zombie_is_gone() -> None:
    here = this_process()
    child = subprocess.Popen(["true"])  # ends, and is not reaped until wait()
    try:
        wait_until(lambda: Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1]
                   .split()[0] == "Z", 10, "the child to become a zombie")
        assert is_gone(instance(here, pid=child.pid), here, utcnow(), DEAD_AFTER)
    finally:
        child.wait()


def test_elsewhere_the_heartbeat_decides() -> None:
    here = this_process()
    # another machine (or a container with its own pids): pid numbers mean nothing here
    for machine in ("another-boot/pid:[4026531836]", ""):
        remote = instance(here, machine=machine, pid=os.getpid())
        assert not is_gone(remote, here, utcnow(), DEAD_AFTER)
        with time_machine.travel(utcnow() + timedelta(seconds=DEAD_AFTER + 1)):
            assert is_gone(remote, here, utcnow(), DEAD_AFTER)


def test_a_heartbeat_margin_too_thin_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[recovery]\nheartbeat_seconds = 10\ndead_after_seconds = 20\n")
    with pytest.raises(ConfigError, match="at least 3 x heartbeat_seconds"):
        load_config(path, environ={})
    path.write_text("[recovery]\nheartbeat_seconds = 10\ndead_after_seconds = 30\n")
    assert load_config(path, environ={}).recovery.dead_after_seconds == 30
