"""The IMAP door: empty a mailbox on the organisation's mail server into the spool.

For each message, by UID: fetch it without marking it read, spool it (blob fsynced, row
committed), and only then move it to the processed mailbox; the server's copy is mailflow's
acknowledgement, as SMTP's 250 is. A crash between the two leaves the message in the mailbox;
the next pass finds its IMAP URL (mailbox, UIDVALIDITY, UID) already spooled and just moves it,
and a message that comes back under a new UIDVALIDITY is caught by the worker's fingerprint.
New mail is waited for with IDLE (or polling where the server has none); every failure of the
connection is retried with backoff, and nothing is lost meanwhile: the mail waits on the server.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterable
from email.parser import BytesHeaderParser
from email.policy import compat32
from time import monotonic
from urllib.parse import quote

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from mailflow.app import App
from mailflow.config import ImapConfig
from mailflow.db.models import InboundMessage
from mailflow.spool import Arrival, spool

log = logging.getLogger(__name__)

FETCH_BODY = b"BODY[]"
CONNECTION_ERRORS = (IMAPClientError, OSError, ssl.SSLError, socket.timeout)


class ImapIntake:
    def __init__(self, app: App, on_spooled: Callable[[int], None] = lambda _id: None) -> None:
        self.app = app
        self.cfg: ImapConfig = app.config.imap
        self.on_spooled = on_spooled
        self.spooled = 0  # counters for the banner, metrics and tests
        self.moved = 0
        self.too_large = 0
        self.connected = threading.Event()
        self.idling = threading.Event()  # waiting in IDLE for new mail

    @property
    def where(self) -> str:
        return f"{self.cfg.username}@{self.cfg.host}:{self.cfg.port}/{self.cfg.mailbox}"

    # --- the loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Until stop is set: connect, empty the mailbox, wait for more; reconnect on failure."""
        failures = 0
        while not stop.is_set():
            try:
                with self._connect() as client:
                    self._serve(client, stop)
                failures = 0
            except Exception as exc:  # any failure: the door must keep trying, never just end
                self.connected.clear()
                delays = self.cfg.reconnect_seconds or (30.0,)
                delay = delays[min(failures, len(delays) - 1)]
                failures += 1
                if isinstance(exc, CONNECTION_ERRORS):
                    log.warning("IMAP intake %s: %s: %s; trying again in %.0f s (the mail "
                                "waits on the server)", self.where, type(exc).__name__, exc,
                                delay)
                else:  # e.g. the database: its message may carry addresses, so the type only
                    log.error("IMAP intake %s: %s while taking mail; trying again in %.0f s",
                              self.where, type(exc).__name__, delay)
                    log.debug("IMAP intake failure", exc_info=True)
                stop.wait(delay)
        self.connected.clear()

    def _connect(self) -> IMAPClient:
        cfg = self.cfg
        context = None
        if cfg.security != "none":
            context = ssl.create_default_context(cafile=self.app.config.path(cfg.ca_file)
                                                 if cfg.ca_file else None)
            if not cfg.tls_verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        client = IMAPClient(cfg.host, port=cfg.port, ssl=cfg.security == "tls",
                            ssl_context=context, timeout=cfg.timeout_seconds)
        try:
            if cfg.security == "starttls":
                client.starttls(context)
            client.login(cfg.username, cfg.password)
        except BaseException:
            client.shutdown()
            raise
        return client

    def _serve(self, client: IMAPClient, stop: threading.Event) -> None:
        for name in (self.cfg.processed_mailbox, self.cfg.rejected_mailbox):
            if not client.folder_exists(name):
                client.create_folder(name)
        selected = client.select_folder(self.cfg.mailbox)
        validity = int(selected[b"UIDVALIDITY"])
        self.connected.set()
        log.info("IMAP intake: watching %s", self.where)
        while not stop.is_set():
            if self.drain(client, validity, stop):
                continue  # more may have come while we worked
            self._wait(client, stop)

    def _wait(self, client: IMAPClient, stop: threading.Event) -> None:
        """Until the server reports a change, idle_seconds pass, or we are stopped."""
        if not client.has_capability("IDLE"):
            stop.wait(self.cfg.poll_seconds)
            client.noop()
            return
        client.idle()
        self.idling.set()
        try:
            until = monotonic() + self.cfg.idle_seconds
            while not stop.is_set() and monotonic() < until:
                began = monotonic()
                if client.idle_check(timeout=1):
                    return
                if monotonic() - began < 0.5:
                    # nothing, and at once: imapclient's answer to a connection the server
                    # closed without a word; waiting on would spin
                    raise ConnectionResetError("the IMAP server closed the connection")
        finally:
            self.idling.clear()
            with contextlib.suppress(*CONNECTION_ERRORS):
                client.idle_done()

    # --- one pass ---------------------------------------------------------------------------

    def drain(self, client: IMAPClient, validity: int, stop: threading.Event) -> int:
        """Spool and move up to `batch` messages; how many were handled."""
        uids = sorted(client.search(["NOT", "DELETED"]))[: self.cfg.batch]
        if not uids:
            return 0
        sizes = client.fetch(uids, ["RFC822.SIZE"])
        handled = 0
        for uid in uids:
            if stop.is_set():
                break
            size = int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0))
            if size > self.app.config.smtp.max_message_bytes:
                self.too_large += 1
                log.warning("IMAP intake: message UID %d is %d bytes, over the limit of %d: "
                            "moved to %s for a person to look at", uid, size,
                            self.app.config.smtp.max_message_bytes, self.cfg.rejected_mailbox)
                self._move(client, uid, self.cfg.rejected_mailbox)
                handled += 1
                continue
            ref = self._ref(validity, uid)
            if not self._already_spooled(ref):
                fetched = client.fetch([uid], [b"BODY.PEEK[]"]).get(uid, {})
                raw = fetched.get(FETCH_BODY)
                if raw is None:  # expunged by someone else meanwhile
                    log.info("IMAP intake: message UID %d went away before it was read", uid)
                    continue
                message_id = self._spool(raw, ref)
                if message_id is not None:
                    self.spooled += 1
                    self.on_spooled(message_id)
            self._move(client, uid, self.cfg.processed_mailbox)
            handled += 1
        return handled

    def _ref(self, validity: int, uid: int) -> str:
        cfg = self.cfg
        return (f"imap://{quote(cfg.username, safe='')}@{cfg.host}:{cfg.port}/"
                f"{quote(cfg.mailbox, safe='')};UIDVALIDITY={validity}/;UID={uid}")

    def _already_spooled(self, ref: str) -> bool:
        with self.app.sessions() as session:
            return session.execute(
                select(InboundMessage.id).where(InboundMessage.source_ref == ref)
            ).first() is not None

    def _spool(self, raw: bytes, ref: str) -> int | None:
        headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
        arrival = Arrival(
            source="imap", raw=raw, peer=self.cfg.host, mail_from=_envelope_sender(headers),
            rcpt_to=tuple(_recipients(headers, self.app.config.mail.domain,
                                      self._default_rcpt())),
            tls=self.cfg.security != "none", source_ref=ref,
        )
        try:
            return spool(self.app, arrival)
        except IntegrityError:
            return None  # another IMAP poller spooled it a moment ago

    def _default_rcpt(self) -> str:
        cfg = self.app.config
        return cfg.imap.default_rcpt or cfg.address(cfg.mail.cases_local)

    def _move(self, client: IMAPClient, uid: int, mailbox: str) -> None:
        if client.has_capability("MOVE"):
            client.move([uid], mailbox)
        else:
            client.copy([uid], mailbox)
            client.delete_messages([uid])
            if client.has_capability("UIDPLUS"):
                client.uid_expunge([uid])
            else:
                client.expunge()
        self.moved += 1


def _envelope_sender(headers: object) -> str:
    """The envelope sender as the delivering server recorded it (Return-Path: the topmost);
    <> is a bounce. Without one, From: stands in (never empty: that would mean a bounce)."""
    get_all = headers.get_all  # type: ignore[attr-defined]
    paths = get_all("Return-Path") or []
    if paths:
        address = email.utils.parseaddr(str(paths[0]))[1]
        return address if address and address != "<>" else ""
    return email.utils.parseaddr(str(headers.get("From", "")))[1]  # type: ignore[attr-defined]


def _recipients(headers: object, domain: str, default: str) -> Iterable[str]:
    """Who the message was delivered to: the delivering server's own Delivered-To (or
    X-Original-To), the topmost, which a sender cannot put above it; else the addresses of
    our domain in To: and Cc: (a reply's signed address still proves itself); else the
    default (cases@)."""
    get_all = headers.get_all  # type: ignore[attr-defined]
    for name in ("Delivered-To", "X-Original-To"):
        found = get_all(name) or []
        if found:
            address = email.utils.parseaddr(str(found[0]))[1]
            if address:
                return [address]
    named = [address for _name, address in email.utils.getaddresses(
        [str(v) for v in (get_all("To") or []) + (get_all("Cc") or [])])
        if address.lower().endswith("@" + domain.lower())]
    return named or [default]
