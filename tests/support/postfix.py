"""A real Postfix (Debian's package) for tests: the MTA a site puts in front of mailflow and
behind it, configured for one test module, not a fake.

Everything (main.cf, master.cf, the transport table, queue, data directory, log) lives in one
folder and Postfix listens on 127.0.0.1 only, on ports picked at start, with no system aliases,
no local delivery and nothing from /etc/postfix but its meta files (postfix-files). It is
started with `postfix -c DIR start` and stopped with `postfix -c DIR stop` (then abort).

Postfix needs root (its master binds, then its daemons run as the `postfix` user and chdir into
the queue): the folder is made under the system's temporary directory, reachable by that user,
as pytest's tmp_path is not. `maillog_file` (written by postlogd) is the log a failing test
prints; `log_since()` gives what was logged since a mark.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from mailflow.store.tls import write_pair
from tests.support.dovecot import HOST, free_port

POSTFIX = "/usr/sbin/postfix"
POSTQUEUE = "/usr/sbin/postqueue"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0

# The daemons of master.cf that any role needs, none chrooted (the queue is in a temporary
# folder, not /var/spool/postfix); the smtpd listeners are added per instance.
MASTER_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixError(RuntimeError):
    """Postfix did not do as asked; the message carries the end of its log."""


class Postfix:
    """One Postfix instance in its own folder.

    `settings`: main.cf lines for the role the test gives it (relay_domains, transport_maps
    entries come from `transports`); `listeners`: a name for each smtpd listener, with its
    master.cf `-o` overrides; `port(name)` is where it listens once started."""

    def __init__(self, settings: dict[str, str], listeners: dict[str, dict[str, str]],
                 transports: dict[str, str] | None = None,
                 certificate: tuple[bytes, bytes] | None = None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="mailflow-postfix-"))
        self.folder.chmod(0o711)  # the postfix user passes through to its queue
        self.config_dir = self.folder / "conf"
        self.queue_dir = self.folder / "queue"
        self.data_dir = self.folder / "data"
        self.log_path = self.folder / "maillog"
        self.transport_path = self.config_dir / "transport"
        self.settings = dict(settings)
        self.listeners = listeners
        self.transports = dict(transports or {})
        self.ports: dict[str, int] = {}
        self.running = False
        owner = pwd.getpwnam("postfix")
        for folder in (self.config_dir, self.queue_dir, self.data_dir):
            folder.mkdir(mode=0o755)
        os.chown(self.data_dir, owner.pw_uid, owner.pw_gid)  # master.lock, caches
        if certificate is not None:  # smtpd's (PEM certificate, key): STARTTLS offered
            cert, key = self.config_dir / "smtpd-cert.pem", self.config_dir / "smtpd-key.pem"
            write_pair(cert, key, *certificate)
            self.settings.setdefault("smtpd_tls_cert_file", str(cert))
            self.settings.setdefault("smtpd_tls_key_file", str(key))

    # --- life cycle ---------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Write the configuration with fresh ports, start, and return once every listener
        greets; a port taken meanwhile is retried with new ones."""
        for attempt in range(3):
            self.ports = {}
            for name in self.listeners:
                port = free_port()
                while port in self.ports.values():
                    port = free_port()
                self.ports[name] = port
            self._write()
            self._postfix("start")
            self.running = True
            try:
                self._wait_for_greetings(timeout)
                return
            except PostfixError:
                in_use = "Address already in use" in self.log_tail()
                self.stop()
                if not in_use or attempt == 2:
                    raise

    def stop(self) -> None:
        """`postfix stop`, and wait for the master to be gone; `postfix abort` and SIGKILL if
        it lingers."""
        if not self.running:
            return
        self.running = False
        pid = self._master_pid()
        for how in ("stop", "abort"):
            with contextlib.suppress(PostfixError):
                self._postfix(how)
            if pid is None or _gone(pid, STOP_TIMEOUT):
                return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        """Stop it and remove its folder (the queue with it)."""
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Postfix:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- changing it while it runs ------------------------------------------------------------

    def configure(self, **settings: str) -> None:
        """Change main.cf settings and `postfix reload`."""
        self.settings.update(settings)
        self._write()
        self._postfix("reload")

    def route(self, domain: str, nexthop: str) -> None:
        """A transport_maps entry (e.g. "smtp:[127.0.0.1]:2525"), taken at once by a reload."""
        self.transports[domain] = nexthop
        self._write()
        if self.running:
            self._postfix("reload")

    def flush(self) -> None:
        """`postqueue -f`: try every deferred message now."""
        self._run([POSTQUEUE, "-c", str(self.config_dir), "-f"])

    def queue(self) -> list[dict[str, object]]:
        """What waits in the queue (`postqueue -j`): one dict per message."""
        out = self._run([POSTQUEUE, "-c", str(self.config_dir), "-j"])
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def port(self, listener: str) -> int:
        return self.ports[listener]

    # --- the log ------------------------------------------------------------------------------

    def log_mark(self) -> int:
        with contextlib.suppress(OSError):
            return self.log_path.stat().st_size
        return 0

    def log_since(self, mark: int) -> str:
        with contextlib.suppress(OSError), self.log_path.open("rb") as fh:
            fh.seek(mark)
            return fh.read().decode(errors="replace")
        return ""

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
            return f"--- {self.log_path} (last {len(text)} lines) ---\n" + "\n".join(text)
        return f"(nothing logged in {self.log_path})"

    # --- inside -------------------------------------------------------------------------------

    def _write(self) -> None:
        base = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "maillog_file": str(self.log_path),
            "maillog_file_prefixes": str(self.folder),
            "inet_interfaces": HOST,
            "inet_protocols": "ipv4",
            # no local delivery, no aliases, nothing of this machine's own mail set-up
            "mydestination": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "transport_maps": f"texthash:{self.transport_path}",
        }
        main = {**base, **self.settings}
        (self.config_dir / "main.cf").write_text(
            "# Written by tests/support/postfix.py for one test module.\n"
            + "".join(f"{key} = {value}\n" for key, value in main.items()))
        self.transport_path.write_text(
            "".join(f"{domain} {nexthop}\n" for domain, nexthop in self.transports.items()))
        listeners = "".join(
            f"{HOST}:{self.ports.get(name, 0)} inet n - n - - smtpd\n"
            + "".join(f"  -o {key}={value}\n" for key, value in overrides.items())
            for name, overrides in self.listeners.items())
        (self.config_dir / "master.cf").write_text(listeners + MASTER_SERVICES)

    def _postfix(self, command: str) -> None:
        try:
            self._run([POSTFIX, "-c", str(self.config_dir), command])
        except PostfixError as exc:
            raise PostfixError(f"{exc}\n{self.log_tail()}") from None

    @staticmethod
    def _run(argv: list[str]) -> str:
        # Files, not pipes: postfix-script leaves `postsuper &` running after start and
        # reload, and a pipe would make us wait for it (seconds) to close its end.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                  timeout=60, check=False)
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode(errors="replace"), err.read().decode(
                errors="replace")
        if done.returncode != 0:
            raise PostfixError(f"{' '.join(argv)} exited with {done.returncode}: "
                               f"{(stderr or stdout).strip()}")
        return stdout

    def _master_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError):
            return int((self.queue_dir / "pid" / "master.pid").read_text().strip())
        return None

    def _wait_for_greetings(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = dict(self.ports)
        last_error = "no answer yet"
        while pending:
            if time.monotonic() > deadline:
                raise PostfixError(f"Postfix did not greet on {sorted(pending.values())} within "
                                   f"{timeout:.0f} s ({last_error})\n{self.log_tail()}")
            for name, port in list(pending.items()):
                try:
                    with socket.create_connection((HOST, port), timeout=2) as sock:
                        greeting = sock.recv(1024)
                except OSError as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
                    continue
                if greeting.startswith(b"220"):
                    del pending[name]
            if pending:
                time.sleep(0.05)


def _gone(pid: int, timeout: float) -> bool:
    """Whether process `pid` ends (or is a zombie) within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def postfix_missing() -> str:
    """Why Postfix cannot run here ("" when it can), for a skip (or a failure on CI)."""
    if not os.access(POSTFIX, os.X_OK):
        return "Postfix is not installed (make test installs it as root: apt-get install postfix)"
    if os.geteuid() != 0:
        return "Postfix's master runs as root: run these tests as root (as make test on CI)"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "the postfix user is missing (a broken Postfix package?)"
    return ""


def require_postfix() -> None:
    """Skip the calling tests when Postfix cannot run here; fail instead when CI is set, so
    CI can never go green by skipping (as tests/support/corpus.py does)."""
    import pytest

    why = postfix_missing()
    if why and os.environ.get("CI"):
        pytest.fail(f"{why} (CI is set, so this fails instead of skipping)")
    if why:
        pytest.skip(why)
