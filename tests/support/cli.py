"""Running the real `mailflow` command line against a test's configuration.

By default the command runs in the test's process: the same `mailflow.cli.main.main` that
`python -m mailflow` calls, with its own standard input, output and error, and its exit code.
Starting a Python for each command cost a second of CPU in every one of hundreds of calls, a
third of the end-to-end tests' time. `process=True` runs it as its own process, where that is
the point: a fresh interpreter (what it reads from disk, not from this process's caches),
signals, or a second process beside a running one. tests/e2e/test_cli.py covers the door as a
process.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import threading
from typing import Any

from mailflow.config import Config

_STREAMS = threading.Lock()  # sys.stdin/stdout/stderr are the process's: one command at a time


def run_cli(
    config: Config, *args: str, input: str | None = None, check: bool = True,
    process: bool = False,
) -> subprocess.CompletedProcess[str]:
    argv = ["--config", str(config.base_dir / "config.toml"), *args]
    result = _as_process(argv, input) if process else _in_process(argv, input)
    if check and result.returncode != 0:
        raise AssertionError(
            f"mailflow {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


def _as_process(argv: list[str], input: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailflow", *argv],
        capture_output=True, text=True, input=input, timeout=120,
    )


def _text_stream(data: bytes = b"") -> io.TextIOWrapper:
    # a real text stream over bytes: commands that write bytes use sys.stdout.buffer
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", newline=None,
                            write_through=True)


def _read(stream: io.TextIOWrapper) -> str:
    buffer = stream.buffer
    assert isinstance(buffer, io.BytesIO)
    return buffer.getvalue().decode("utf-8", errors="replace").replace("\r\n", "\n")


def _in_process(argv: list[str], input: str | None) -> subprocess.CompletedProcess[str]:
    from mailflow.cli.main import main

    stdin, stdout, stderr = _text_stream((input or "").encode()), _text_stream(), _text_stream()
    with _STREAMS, contextlib.ExitStack() as stack:
        stack.enter_context(_replace(sys, "stdin", stdin))
        stack.enter_context(contextlib.redirect_stdout(stdout))
        stack.enter_context(contextlib.redirect_stderr(stderr))
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse's usage errors, and sys.exit in a command
            if isinstance(exit_.code, int) or exit_.code is None:
                code = exit_.code or 0
            else:
                print(exit_.code, file=sys.stderr)
                code = 1
    return subprocess.CompletedProcess(["mailflow", *argv], code, _read(stdout), _read(stderr))


@contextlib.contextmanager
def _replace(owner: Any, name: str, value: Any) -> Any:
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield value
    finally:
        setattr(owner, name, old)


def cli_json(config: Config, *args: str) -> Any:
    return json.loads(run_cli(config, *args, "--json").stdout)
