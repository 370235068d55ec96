"""The SMTP door (aiosmtpd): STARTTLS, AUTH after TLS, cheap checks early, spool before 250.

Reply codes follow RFC 3463: temporary problems are 4xx with a 4.x.x code, so the sender's
client retries; nothing is acknowledged before the message is on disk and in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from email.utils import getaddresses
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from mailflow.app import App
from mailflow.db.models import AccountStatus
from mailflow.db.session import transaction
from mailflow.intake import xforward
from mailflow.intake.smtp_data import smtp_data
from mailflow.intake.smtp_guard import (
    GREETING_WORDS,
    IDLE_CLOSE,
    SHUTTING_DOWN,
    TOO_MANY_CONNECTIONS,
    ConnectionCap,
    Connections,
    RedactReplyAddresses,
    peer_address,
)
from mailflow.spool import Arrival, spool
from mailflow.store.tls import server_context
from mailflow.trust import passwords, replyaddr
from mailflow.trust.lockout import Lockout

log = logging.getLogger(__name__)


class _QuietDeprecation(logging.Filter):
    """aiosmtpd warns on every AUTH that it sets its own deprecated attribute; not our news."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_QuietDeprecation())
logging.getLogger("mail.log").addFilter(RedactReplyAddresses())


class Reply:
    """The replies this door gives, each with its enhanced status code."""

    OK = "250 2.1.0 OK"
    RCPT_OK = "250 2.1.5 OK"
    NO_MAILBOX = "550 5.1.1 {address}: no such mailbox here"
    AUTH_REQUIRED = "530 5.7.0 Authentication required (only {register} takes mail without it)"
    TOO_MANY_RCPT = "452 4.5.3 Too many recipients"
    NOT_YOUR_ADDRESS = "553 5.7.1 {address}: you may only send as {user}"
    FROM_MISMATCH = "550 5.7.1 The From: header must be your account's address {user}"
    RATE = "451 4.7.1 Too many messages from {user}; try again in a minute"
    TOO_BIG = "552 5.3.4 Message too big: the limit is {limit} bytes"
    LINE_TOO_LONG = "500 5.5.2 Line too long (RFC 5321 4.5.3.1.6)"
    SPOOL_FAILED = "451 4.3.0 Temporary problem storing the message; please try again"
    ACCEPTED = "250 2.0.0 Accepted as message {ref}"


@dataclass(frozen=True)
class _PendingCheck:
    mechanism: str
    credentials: LoginPassword


class MailflowSMTP(xforward.XforwardCommand, SMTP):
    """aiosmtpd's SMTP, with enhanced status codes on the replies aiosmtpd words itself, and
    password checks (argon2, a database read) off the event loop."""

    # RFC 5321 says 1000, but real clients send longer lines; refusing them would lose mail.
    line_length_limit = 64 * 1024

    def __init__(self, *args: Any, auth_executor: Executor | None = None,
                 connection_cap: ConnectionCap | None = None,
                 connections: Connections | None = None,
                 slow_down: Callable[[Session], float] | None = None,
                 xforward_hosts: frozenset[str] = frozenset(), **kwargs: Any) -> None:
        self.xforward_hosts = xforward_hosts  # before super(): it makes the first envelope
        super().__init__(*args, **kwargs)
        self._auth_executor = auth_executor
        self._slow_down = slow_down
        self._checker = kwargs.get("authenticator")
        self._cap = connection_cap
        self._connections = connections
        self._counted: str | None = None  # the address this connection counts against
        self._admitted = True

    def _authenticate(self, mechanism: str, auth_data: Any) -> AuthResult:
        # aiosmtpd calls this synchronously on the loop; hand the check back to the auth_*
        # methods below, which await it on a thread.
        return AuthResult(
            success=False, handled=False, auth_data=_PendingCheck(mechanism, auth_data)
        )

    async def _finish_auth(self, result: AuthResult) -> AuthResult:
        pending = result.auth_data
        if not isinstance(pending, _PendingCheck) or self._checker is None:
            return result
        loop = asyncio.get_running_loop()
        if self._slow_down is not None:  # the lockout's wait for this address, off the loop's
            delay = await loop.run_in_executor(self._auth_executor, self._slow_down,
                                               self.session)
            if delay > 0:
                await asyncio.sleep(delay)  # holds no thread: the door serves everyone else
        return await loop.run_in_executor(
            self._auth_executor,
            self._checker,
            self,
            self.session,
            self.envelope,
            pending.mechanism,
            pending.credentials,
        )

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._finish_auth(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._finish_auth(await super().auth_LOGIN(_, args))

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str):  # AUTH challenges are bytes, and pass through untouched
            if status.startswith("552 Error"):
                status = Reply.TOO_BIG.format(limit=self.data_size_limit)
            elif status.startswith("500 Line too long"):
                status = Reply.LINE_TOO_LONG
        await super().push(status)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None  # called again with the TLS transport after STARTTLS
        super().connection_made(transport)
        if first and self._cap is not None:
            address = peer_address(self.session.peer if self.session else None)
            self._admitted = self._cap.admit(address)
            self._counted = address if self._admitted else None
        if first and self._connections is not None:
            self._connections.open.add(self)

    @property
    def in_transaction(self) -> bool:
        """A message in hand: MAIL given and its DATA not answered yet."""
        return self.envelope is not None and self.envelope.mail_from is not None

    async def _refuse(self, reply: str) -> None:
        with contextlib.suppress(ConnectionError):  # it may be gone already
            await self.push(reply.format(host=self.hostname))
        if self.transport is not None:
            self.transport.close()

    def shut(self) -> None:
        """The stop's last word to an idle connection."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(SHUTTING_DOWN.format(host=self.hostname).encode() + b"\r\n")
            self.transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        if self._connections is not None:
            self._connections.open.discard(self)
        if self._cap is not None and self._counted is not None:
            self._cap.release(self._counted)
            self._counted = None
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if not self._admitted:  # over the per-address cap: 421 instead of the greeting
            log.warning("smtp connection from %s refused: %d already open",
                        peer_address(self.session.peer if self.session else None),
                        self._cap.per_address if self._cap else 0)
            await self._refuse(TOO_MANY_CONNECTIONS)
            return
        if self._connections is not None and self._connections.closing:
            await self._refuse(SHUTTING_DOWN)
            return
        await super()._handle_client()

    async def smtp_DATA(self, arg: str) -> None:
        # read in large pieces, not aiosmtpd's line by line (intake/smtp_data.py)
        if self._decode_data or "DATA" not in self._handle_hooks:
            await super().smtp_DATA(arg)
        else:
            await smtp_data(self, arg)

    async def smtp_MAIL(self, arg: str | None) -> None:
        if self._connections is not None and self._connections.closing:  # no new message
            await self._refuse(SHUTTING_DOWN)
            return
        await super().smtp_MAIL(arg)

    def data_received(self, data: bytes) -> None:
        # Idle means nothing received: a large message arriving slowly keeps its connection
        # (aiosmtpd's timer only restarts at each command, so DATA would have to be quick).
        self._reset_timeout()
        super().data_received(data)

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        # While the door works (spooling a message: fsync and commit) the client waits its
        # turn; that is not idleness, so the timer starts again only after the answer.
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
        try:
            return await super()._call_handler_hook(command, *args)
        finally:
            if self.transport is not None:
                self._reset_timeout()

    def _timeout_cb(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(IDLE_CLOSE.format(host=self.hostname).encode() + b"\r\n")
        super()._timeout_cb()


class SenderRate:
    """A sliding one-minute window of accepted messages per sender."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._seen: dict[str, deque[float]] = defaultdict(deque)

    def allow(self, who: str) -> bool:
        now = time.monotonic()
        window = self._seen[who]
        while window and now - window[0] > 60:
            window.popleft()
        if len(window) >= self.per_minute:
            return False
        window.append(now)
        return True


class Authenticator:
    """AUTH PLAIN/LOGIN against approved accounts; the login is the account's email address.

    The shared sign-in lockout (mailflow/trust/lockout.py) decides: a locked (login, address)
    pair, or a locked login from an address it never signed in from, fails without a check;
    an address with many failures waits before its check (`delay_for`, awaited by the door).
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self.lockout = Lockout(app.config.signin, app.sessions)

    def delay_for(self, session: Session) -> float:
        return self.lockout.delay_for(_peer(session))

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace").strip().lower()
        password = auth_data.password.decode("utf-8", "replace")
        peer = _peer(session)
        charge = self.lockout.charge(login, peer)
        if charge.refused is not None:
            log.warning("smtp auth refused without a check: sign-in locked (%s)", peer)
            return AuthResult(success=False, handled=False)
        with self.app.sessions() as db:
            account = passwords.find_account(db, login)
            if account is None:  # as long as a check: the timing reveals no account
                ok = passwords.waste_a_check(password)
            else:
                ok = (passwords.check_password(account, password)
                      and account.status == AccountStatus.APPROVED)
        if not ok:
            self.lockout.failed(charge)
            log.info("smtp auth failed for a login from %s", peer)
            return AuthResult(success=False, handled=False)
        with transaction(self.app.sessions) as db:
            self.lockout.refund(db, charge, signed_in=True)
        return AuthResult(success=True, auth_data=login)


def _peer(session: Session) -> str:
    return str(session.peer[0]) if session.peer else ""


class IntakeHandler:
    def __init__(
        self,
        app: App,
        executor: Executor | None = None,
        on_spooled: Callable[[int], None] | None = None,
    ) -> None:
        self.app = app
        self.executor = executor
        self.on_spooled = on_spooled or (lambda _id: None)
        self.rate = SenderRate(app.config.smtp.rate_per_minute)
        self.connections = Connections()  # the graceful stop's view (parts.SmtpPart.stop)
        mail = app.config.mail
        self._domain = mail.domain.lower()
        self._locals = {mail.cases_local, mail.help_local, mail.register_local}

    def accepts(self, address: str) -> bool:
        local, _, domain = address.strip().lower().rpartition("@")
        if domain != self._domain:
            return False
        mail = self.app.config.mail
        return local in self._locals or replyaddr.is_reply_address(
            address, mail.reply_local, mail.domain
        )

    @staticmethod
    def _user(session: Session) -> str:
        return str(session.auth_data or "") if session.authenticated else ""

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname  # (aiosmtpd leaves it to this hook)
        if isinstance(server, MailflowSMTP) and server.xforward_allowed:
            responses.insert(len(responses) - 1, xforward.EHLO_LINE)  # before "250 HELP"
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        user = self._user(session)
        if user and address.strip().lower() != user:
            return Reply.NOT_YOUR_ADDRESS.format(address=address, user=user)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return Reply.OK

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= self.app.config.smtp.max_recipients:
            return Reply.TOO_MANY_RCPT
        if not self.accepts(address):
            return Reply.NO_MAILBOX.format(address=address)
        register = self.app.config.address(self.app.config.mail.register_local)
        if (self.app.config.smtp.require_auth and not session.authenticated
                and address.strip().lower() != register):
            return Reply.AUTH_REQUIRED.format(register=register)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return Reply.RCPT_OK

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        user = self._user(session)
        if user:
            from_addrs = _header_from(raw)
            if from_addrs and from_addrs != [user]:
                return Reply.FROM_MISMATCH.format(user=user)
        peer, helo = (str(session.peer[0]) if session.peer else ""), session.host_name or ""
        client = peer
        forwarded = xforward.of(envelope)
        if forwarded is not None:  # the client of the MTA in front: what SPF is about
            log.info("xforward from %s: the client was %s", peer, forwarded.describe())
            client = forwarded.addr
            trust = self.app.config.trust
            # a trusted relay stays the peer: its own Authentication-Results are what count
            if not (peer in trust.trusted_relays and trust.authserv_id):
                peer, helo = forwarded.addr, forwarded.helo
        who = user or client or "unknown"
        if not self.rate.allow(who):
            return Reply.RATE.format(user=who)
        arrival = Arrival(
            source="smtp",
            raw=raw,
            peer=peer,
            mail_from=envelope.mail_from or "",
            rcpt_to=tuple(envelope.rcpt_tos),
            auth_user=user,
            tls=server._tls_protocol is not None,
            helo=helo,
        )
        loop = asyncio.get_running_loop()
        try:
            message_id = await loop.run_in_executor(self.executor, spool, self.app, arrival)
        except Exception:
            log.exception("could not spool a message from %s", arrival.peer)
            return Reply.SPOOL_FAILED
        log.info("accepted message %d (%d bytes) from %s", message_id, len(raw), user or "-")
        self.on_spooled(message_id)
        return Reply.ACCEPTED.format(ref=message_id)


def _header_from(raw: bytes) -> list[str]:
    """The From: addresses, read from the header block only (cheap, on the accept path)."""
    end = raw.find(b"\r\n\r\n")
    head = raw if end < 0 else raw[: end + 2]
    try:
        headers = BytesHeaderParser(policy=default_policy).parsebytes(head)
        values = headers.get_all("From") or []
        return [addr.lower() for _name, addr in getaddresses([str(v) for v in values]) if addr]
    except Exception:  # a malformed header is the worker's problem, not a reason to refuse
        return []


def make_smtp_factory(app: App, handler: IntakeHandler) -> Callable[[], MailflowSMTP]:
    cfg = app.config.smtp
    tls = server_context(app.config.storage_dir)
    authenticator = Authenticator(app)
    hostname = cfg.hostname or app.config.mail.domain
    cap = ConnectionCap(cfg.max_connections_per_ip)

    def factory() -> MailflowSMTP:
        return MailflowSMTP(
            handler,
            data_size_limit=cfg.max_message_bytes,
            hostname=hostname,
            tls_context=tls,
            require_starttls=False,
            auth_required=False,  # enforced per recipient in handle_RCPT: register@ is open
            auth_require_tls=True,
            authenticator=authenticator,
            auth_executor=handler.executor,
            slow_down=authenticator.delay_for,
            timeout=cfg.idle_timeout_seconds,
            ident=GREETING_WORDS,
            connection_cap=cap,
            xforward_hosts=frozenset(cfg.xforward_hosts),
            connections=handler.connections,
            command_call_limit={"AUTH": 3, "*": 100_000},
        )

    return factory


async def start_smtp(
    app: App, handler: IntakeHandler, host: str | None = None, port: int | None = None
) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    cfg = app.config.smtp
    return await loop.create_server(
        make_smtp_factory(app, handler), host or cfg.host, cfg.port if port is None else port,
        reuse_port=cfg.reuse_port or None,
    )
