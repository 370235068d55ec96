"""A real Dovecot IMAP server for tests: what mailflow's IMAP door meets at a site, not a fake.

Everything (config, run and state dirs, log, passwd-files, Maildirs, TLS certificate) lives under
one folder, typically a pytest tmp_path, and the server listens on 127.0.0.1 only, on ports
picked at start, so tests can run side by side. Dovecot runs in the foreground as our child.

As root (our CI), Dovecot refuses to touch mail as UID 0, and pytest's tmp_path sits under a
directory only root may enter; so mail is handled by the unprivileged `mail` user inside a
chroot of the folder's `mail` directory, and the auth process stays root to read the
passwd-files. As anyone else, every Dovecot process runs as the current user, with no chroots.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import grp
import imaplib
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Literal

from imapclient import IMAPClient

from mailflow.store.tls import self_signed, write_pair

DOVECOT = "/usr/sbin/dovecot"
HOST = "127.0.0.1"
# As root, the first of each that exists: who handles the mail, who runs the login processes
# (facing the network), who runs Dovecot's internal services.
MAIL_USERS = ("mail", "nobody")
LOGIN_USERS = ("dovenull", "nobody")
INTERNAL_USERS = ("dovecot", "nobody")
# Dovecot's default auth_username_chars, and no leading dot: also a file and a directory name.
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")
Security = Literal["tls", "starttls", "none"]  # as mailflow's [imap] security
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


class DovecotError(RuntimeError):
    """Dovecot did not start (or stop) as asked; the message carries the end of its log."""


def free_port() -> int:
    """A port the kernel just handed out and took back: free unless someone races us for it."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _death_signal() -> Callable[[], None] | None:
    """For the child between fork and exec: have Linux SIGTERM Dovecot if the test process dies
    without calling stop(). Linux ties this to the starting *thread*, so it is only asked for
    from the main thread, where a server started in a short-lived thread would not die early.
    prctl is looked up here, before the fork, so the child only makes the call."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def set_death_signal() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return set_death_signal


class Dovecot:
    """One Dovecot instance confined to `folder`; start() it, add users, point clients at it."""

    def __init__(self, folder: Path | str, lmtp: bool = False) -> None:
        self.folder = Path(folder).resolve()
        self.host = HOST
        self.port = 0  # plain IMAP with STARTTLS; set by start()
        self.tls_port = 0  # implicit TLS; set by start()
        # LMTP, as an MTA (Postfix) delivers into the mailboxes; set by start() when asked for
        self.lmtp = lmtp
        self.lmtp_port = 0
        self.config_path = self.folder / "dovecot.conf"
        # base_dir holds Unix sockets, whose paths may not pass 107 bytes: a test's folder
        # under xdist is too deep, so sockets live in a short folder of their own
        self.run_dir = Path(tempfile.mkdtemp(prefix="dovecot-"))
        self.state_dir = self.folder / "state"
        self.log_path = self.folder / "dovecot.log"
        self.stderr_path = self.folder / "dovecot.stderr"  # what Dovecot says before logging
        self.mail_dir = self.folder / "mail"  # one home (with a Maildir) per user
        self.users_dir = self.folder / "users"  # a passwd-file per user, named as the user
        self.cafile = self.folder / "cert.pem"  # also the server's certificate: self-signed
        self.keyfile = self.folder / "key.pem"
        self.as_root = os.geteuid() == 0
        account = _account(MAIL_USERS) if self.as_root else pwd.getpwuid(os.geteuid())
        self.mail_user = account.pw_name
        self.mail_uid = account.pw_uid
        self.mail_gid = account.pw_gid
        self._process: subprocess.Popen[bytes] | None = None

        self.folder.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(exist_ok=True)
        self.mail_dir.mkdir(mode=0o755, exist_ok=True)
        self.users_dir.mkdir(mode=0o700, exist_ok=True)
        write_pair(self.cafile, self.keyfile, *self_signed("localhost", days=30))

    # --- life cycle ---------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start Dovecot on fresh ports and return once it greets on both of them; a port taken
        between our probe and Dovecot's bind is retried with new ones."""
        if self._process is not None:
            raise DovecotError("Dovecot is already running")
        for attempt in range(3):
            self.port = self.tls_port = free_port()
            while self.tls_port == self.port:
                self.tls_port = free_port()
            self.lmtp_port = self.port if self.lmtp else 0
            while self.lmtp and self.lmtp_port in (self.port, self.tls_port):
                self.lmtp_port = free_port()
            self.config_path.write_text(self._config())
            self.log_path.unlink(missing_ok=True)
            with self.stderr_path.open("wb") as stderr:
                self._process = subprocess.Popen(
                    [DOVECOT, "-F", "-c", str(self.config_path)],
                    stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                    start_new_session=True,  # its own process group: stop() sweeps it whole
                    preexec_fn=_death_signal(),
                )
            try:
                self._wait_for_greeting(timeout)
                return
            except DovecotError:
                in_use = "Address already in use" in self._log_tail()
                self.stop()
                if not in_use or attempt == 2:
                    raise
            except BaseException:  # e.g. Ctrl-C while waiting: leave nothing running
                self.stop()
                raise

    def stop(self) -> None:
        """SIGTERM Dovecot (it ends its children), then SIGKILL whatever of its process group
        still runs. Its `log` process exits just after the master and, no longer our child,
        may linger a moment as a zombie until init reaps it: that holds no port and no file."""
        process, self._process = self._process, None
        if process is None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
        deadline = time.monotonic() + STOP_TIMEOUT
        while (left := _running_in_group(process.pid)) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    @property
    def running(self) -> bool:
        """Whether the master process is alive (a test may kill it to simulate an outage)."""
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- users ------------------------------------------------------------------------------

    def add_user(self, name: str, password: str) -> None:
        """Add a user, or change their password, before or after start().

        Each user has a passwd-file of their own: Dovecot looks at a passwd-file at most once
        a second and sees a change only by its mtime (whole seconds) or size, but it always
        reads a file it has not seen, so a user added while it runs can log in at once. A
        changed password gets a later mtime and, when running, waits for the next second."""
        if not USERNAME.fullmatch(name):
            raise ValueError(f"unusable IMAP user name for the test server: {name!r}")
        home = self.mail_dir / name
        home.mkdir(mode=0o700, exist_ok=True)
        if self.as_root:
            os.chown(home, self.mail_uid, self.mail_gid)
        # Under the mail chroot the home is seen from inside it. The password is base64: a
        # colon or any other character in it cannot break the line.
        user_home = f"/{name}" if self.as_root else str(home)
        encoded = base64.b64encode(password.encode()).decode()
        line = f"{name}:{{PLAIN.B64}}{encoded}:{self.mail_uid}:{self.mail_gid}::{user_home}::\n"
        path = self.users_dir / name
        replacing = path.exists()
        staging = self.users_dir / f".{name}.new"  # names never start with a dot
        staging.touch(mode=0o600)
        staging.write_text(line)
        if replacing:
            stamp = max(int(time.time()), int(path.stat().st_mtime) + 1)
            os.utime(staging, (stamp, stamp))
        staging.replace(path)  # never half a file for a concurrent login
        if replacing and self.running:
            time.sleep(1.01 - time.time() % 1)

    # --- helpers for tests --------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's certificate (and checks the host name)."""
        return ssl.create_default_context(cafile=str(self.cafile))

    @contextlib.contextmanager
    def connect(self, user: str, password: str, security: Security = "tls",
                timeout: float = 10.0) -> Iterator[IMAPClient]:
        """A logged-in client over `security`: "tls" (tls_port), "starttls" or "none" (port)."""
        if security not in ("tls", "starttls", "none"):
            raise ValueError(f"security must be tls, starttls or none, not {security!r}")
        implicit = security == "tls"
        client = IMAPClient(self.host, port=self.tls_port if implicit else self.port,
                            ssl=implicit, ssl_context=self.ssl_context(), timeout=timeout)
        try:
            if security == "starttls":
                client.starttls(self.ssl_context())
            if password.isascii():
                client.login(user, password)
            else:  # LOGIN (imaplib) is ASCII-only; AUTHENTICATE PLAIN sends UTF-8
                client.plain_login(user, password)
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()
            with contextlib.suppress(Exception):
                client.shutdown()

    def append(self, user: str, password: str, raw: bytes, mailbox: str = "INBOX") -> int:
        """Deliver `raw` into `mailbox` as an MTA would leave it; its UID (from APPENDUID)."""
        with self.connect(user, password, security="none") as client:
            try:
                response = client.append(mailbox, raw)
            except imaplib.IMAP4.abort as exc:  # Dovecot hung up: say what it logged
                raise DovecotError(f"APPEND of {len(raw)} bytes cut off ({exc}):\n"
                                   f"{self._log_tail()}") from exc
        found = re.search(rb"\[APPENDUID \d+ (\d+)\]", response)
        if found is None:
            raise DovecotError(f"APPEND gave no UID: {response!r}")
        return int(found.group(1))

    def create_mailbox(self, user: str, password: str, name: str) -> None:
        """Create `name` (with its parents, e.g. "mailflow/processed") unless it exists."""
        with self.connect(user, password, security="none") as client:
            if not client.folder_exists(name):
                client.create_folder(name)
                client.subscribe_folder(name)

    def list_uids(self, user: str, password: str, mailbox: str = "INBOX") -> list[int]:
        """The UIDs in `mailbox`, ascending, looked at read-only so no flag changes."""
        with self.connect(user, password, security="none") as client:
            client.select_folder(mailbox, readonly=True)
            return sorted(int(uid) for uid in client.search("ALL"))

    def messages(self, user: str, password: str, mailbox: str = "INBOX") -> list[bytes]:
        """The raw messages in `mailbox` in UID order, fetched with PEEK (none marked read)."""
        with self.connect(user, password, security="none") as client:
            client.select_folder(mailbox, readonly=True)
            uids = sorted(int(uid) for uid in client.search("ALL"))
            if not uids:
                return []
            fetched = client.fetch(uids, [b"BODY.PEEK[]"])
            return [bytes(fetched[uid][b"BODY[]"]) for uid in uids]

    # --- inside -------------------------------------------------------------------------------

    def _config(self) -> str:
        """The whole configuration: nothing from /etc/dovecot is read."""
        if self.as_root:
            # dovenull and dovecot come with Debian's package; mail is chrooted to mail_dir
            # (which the mail user could not reach otherwise), auth reads passwd as root.
            login, internal = _account(LOGIN_USERS), _account(INTERNAL_USERS)
            identity = f"""
default_login_user = {login.pw_name}
default_internal_user = {internal.pw_name}
default_internal_group = {grp.getgrgid(internal.pw_gid).gr_name}
mail_chroot = {self.mail_dir}
service auth {{
  user = root
}}
"""
            login_service_extra = ""
        else:
            # Nobody to switch to and no chroot() or chown() without root: all of it is us.
            identity = f"""
default_login_user = {self.mail_user}
default_internal_user = {self.mail_user}
default_internal_group = {grp.getgrgid(self.mail_gid).gr_name}
"""
            login_service_extra = "  chroot =\n"
        return f"""# Written by tests/support/dovecot.py for one test; nothing outside this folder.
base_dir = {self.run_dir}
state_dir = {self.state_dir}
instance_name = mailflow-test-{self.port}
protocols = imap{" lmtp" if self.lmtp else ""}
listen = {self.host}
log_path = {self.log_path}
auth_verbose = yes
{identity}
first_valid_uid = {self.mail_uid}
last_valid_uid = {self.mail_uid}
first_valid_gid = {self.mail_gid}
last_valid_gid = {self.mail_gid}
default_client_limit = 200
default_process_limit = 50

ssl = yes
ssl_cert = <{self.cafile}
ssl_key = <{self.keyfile}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = plain login

passdb {{
  driver = passwd-file
  args = {self.users_dir}/%u
}}
userdb {{
  driver = passwd-file
  args = {self.users_dir}/%u
}}

# LAYOUT=fs with "/": mailflow's default "mailflow/processed" is a mailbox inside another.
mail_location = maildir:~/Maildir:LAYOUT=fs
namespace inbox {{
  inbox = yes
  separator = /
}}
# IDLE notices new mail by inotify; this is the fallback poll, short for tests.
mailbox_idle_check_interval = 1 secs

protocol imap {{
  mail_max_userip_connections = 100
}}

service imap-login {{
{login_service_extra}  inet_listener imap {{
    address = {self.host}
    port = {self.port}
  }}
  inet_listener imaps {{
    address = {self.host}
    port = {self.tls_port}
    ssl = yes
  }}
}}
service anvil {{
{login_service_extra}}}
{self._lmtp_config()}"""

    def _lmtp_config(self) -> str:
        if not self.lmtp:
            return ""
        # As root, LMTP delivers as the mail user inside the mail chroot, as IMAP reads.
        return f"""
service lmtp {{
  inet_listener lmtp {{
    address = {self.host}
    port = {self.lmtp_port}
  }}
}}
"""

    def _wait_for_greeting(self, timeout: float) -> None:
        """Until both ports greet: a listening socket alone does not mean logins work yet."""
        deadline = time.monotonic() + timeout
        pending = {self.port: False, self.tls_port: True}
        if self.lmtp:
            pending[self.lmtp_port] = False
        last_error = "no answer yet"
        while pending:
            assert self._process is not None
            if self._process.poll() is not None:
                raise DovecotError(f"Dovecot exited with status {self._process.returncode}\n"
                                   f"{self._log_tail()}")
            if time.monotonic() > deadline:
                raise DovecotError(f"Dovecot did not greet on {self.host}:{sorted(pending)} "
                                   f"within {timeout:.0f} s ({last_error})\n{self._log_tail()}")
            for port, tls in list(pending.items()):
                try:
                    greeting = self._greeting(port, tls)
                except (OSError, ssl.SSLError) as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
                    continue
                if greeting.startswith(b"* OK") or (port == self.lmtp_port
                                                    and greeting.startswith(b"220 ")):
                    del pending[port]
                elif greeting:
                    raise DovecotError(f"unexpected greeting on port {port}: {greeting!r}\n"
                                       f"{self._log_tail()}")
                else:  # accepted, then closed: imap-login not up (or failing); try again
                    last_error = f"port {port} closed without a greeting"
            if pending:
                time.sleep(0.05)

    def _greeting(self, port: int, tls: bool) -> bytes:
        """The first line on `port`; over TLS, checked against our certificate on the way."""
        with socket.create_connection((self.host, port), timeout=2) as raw:
            if not tls:
                return raw.recv(1024)
            with self.ssl_context().wrap_socket(raw, server_hostname="localhost") as wrapped:
                return wrapped.recv(1024)

    def _log_tail(self, lines: int = 30) -> str:
        """The end of what Dovecot said, for error messages: its reason is usually there."""
        parts = []
        for path in (self.stderr_path, self.log_path):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                if text:
                    parts.append(f"--- {path} (last {len(text)} lines) ---\n" + "\n".join(text))
        return "\n".join(parts) or f"(nothing logged in {self.log_path})"


def _running_in_group(pgid: int) -> list[int]:
    """The processes of group `pgid` that still run (zombies left out), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]  # after "pid (comm)"
        if int(pgrp) == pgid and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def _account(names: tuple[str, ...]) -> pwd.struct_passwd:
    """The first of `names` this system has: the unprivileged users Dovecot switches to."""
    for name in names:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise DovecotError(f"running as root, but none of the users {names} exists")


def dovecot_available() -> bool:
    """Whether this machine has Dovecot, for a skipif on tests that need it."""
    return os.access(DOVECOT, os.X_OK)
