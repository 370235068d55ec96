"""Typed configuration: config.toml, overridden by MAILFLOW_<SECTION>__<KEY> variables.

A wrong key or value stops start-up with a message naming it (pydantic, extra keys forbidden).
Relative paths are relative to the config file's folder.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_PREFIX = "MAILFLOW_"
DEFAULT_CONFIG_ENV = "MAILFLOW_CONFIG"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and the problem."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MailConfig(_Section):
    domain: str = "derm.localhost"
    from_name: str = "mailflow consults"
    cases_local: str = "cases"
    help_local: str = "help"
    register_local: str = "register"
    reply_local: str = "case"  # case+<case>.<participant>.<hmac>@domain
    noreply_local: str = "no-reply"
    # False: case emails carry no patient data and no attachments, only the case number and a
    # link to sign in (for deployments whose mail is not end-to-end protected)
    phi_in_email: bool = True


class SmtpConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(2525, ge=0, le=65535)
    hostname: str = ""  # EHLO name; the mail domain when empty
    require_auth: bool = True  # submission: AUTH (after STARTTLS) before MAIL
    max_message_bytes: int = Field(40 * 1024 * 1024, gt=0)
    max_recipients: int = Field(20, gt=0)
    rate_per_minute: int = Field(30, gt=0)  # messages per authenticated sender
    idle_timeout_seconds: float = Field(60, gt=0)  # a connection that sends nothing is closed
    max_connections_per_ip: int = Field(10, gt=0)  # simultaneous; more get 421 and a close
    # the MTA(s) in front of the door (Postfix) whose XFORWARD is believed: the client it
    # names is the one MX mode's SPF check asks about (mailflow/intake/xforward.py)
    xforward_hosts: tuple[str, ...] = ()

    @field_validator("xforward_hosts")
    @classmethod
    def _addresses(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        """IP addresses, as the door sees its clients: a host name would never match."""
        try:
            return tuple(str(ipaddress.ip_address(h.strip())) for h in hosts)
        except ValueError as exc:
            raise ValueError(f"xforward_hosts takes IP addresses ({exc})") from None
    # SO_REUSEPORT: more than one `mailflow smtpd` (or serve) may listen on the port, and the
    # kernel shares the connections out (each process decodes on its own cores)
    reuse_port: bool = False
    shutdown_seconds: float = Field(60, ge=0)  # at a stop, messages in hand get this long


class OutboundConfig(_Section):
    relay_host: str = ""  # empty: write to maildir_path instead
    relay_port: int = Field(25, ge=0, le=65535)
    relay_starttls: bool = False  # unless set: True whenever relay_host is set (below)
    relay_tls_verify: bool = True  # the relay's certificate chains to a trusted CA, names it
    relay_ca_file: str = ""  # trust this CA (PEM; a site's own) instead of the system's
    relay_username: str = ""
    relay_password: str = ""
    maildir_path: str = "var/outgoing"
    retry_schedule_seconds: tuple[int, ...] = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 12 * 3600)
    poll_seconds: float = Field(5.0, gt=0)
    connect_timeout_seconds: float = Field(30.0, gt=0)
    # a row being sent is taken again after this, should its sender stop without a trace
    # ([recovery] finds a stopped sender much sooner; this is the last resort)
    lease_seconds: float = Field(600, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _starttls_to_a_relay(cls, data: Any) -> Any:
        # Mail to a relay carries PHI: encrypted unless the configuration says otherwise.
        if isinstance(data, dict) and "relay_starttls" not in data:
            data = {**data, "relay_starttls": bool(data.get("relay_host"))}
        return data


# Signed by every outgoing message (RFC 6376 §5.4): From is required; a listed header that a
# message lacks is signed as absent, so nobody can add it later without breaking the signature.
DKIM_SIGNED_HEADERS = (
    "From", "To", "Subject", "Date", "Message-ID", "Reply-To", "In-Reply-To", "References",
    "MIME-Version", "Content-Type", "Auto-Submitted",
)


class DkimConfig(_Section):
    """DKIM signatures on every outgoing message (crypto/dkim.py, README "DKIM")."""

    enabled: bool = True
    # the DNS label: the public key is published at <selector>._domainkey.<[mail] domain>
    selector: str = Field("mailflow", pattern=r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
    key_file: str = ""  # the private key (PEM); empty: <storage>/dkim/<selector>.key
    algorithm: Literal["rsa-sha256"] = "rsa-sha256"
    key_bits: int = Field(2048, ge=2048, le=4096)  # of the key `mailflow init` makes
    headers: tuple[str, ...] = DKIM_SIGNED_HEADERS

    @model_validator(mode="after")
    def _from_is_signed(self) -> DkimConfig:
        if "from" not in {h.lower() for h in self.headers}:
            raise ValueError("headers must include From (RFC 6376 requires it to be signed)")
        bad = [h for h in self.headers if not re.fullmatch(r"[!-9;-~]+", h)]
        if bad:
            raise ValueError(f"not header names: {', '.join(bad)}")
        return self


class SmimeConfig(_Section):
    """S/MIME (Direct): inbound signed/encrypted mail opened, outbound mail to providers with
    an approved certificate signed and encrypted (crypto/smime*.py, README "Secure email")."""

    enabled: bool = False
    # mailflow's RSA key and its certificate (issued for the cases@ address by a CA that
    # providers trust); empty: <storage>/smime/mailflow.key and mailflow.pem
    key_file: str = ""
    cert_file: str = ""
    # the CAs a sender's certificate must chain to (PEM bundle); empty: <storage>/smime/anchors.pem
    trust_anchors: str = ""
    # RFC 8551: AES-256-GCM (AuthEnvelopedData) or AES-256-CBC (EnvelopedData, what Direct's
    # Applicability Statement requires every HISP to read)
    encryption: Literal["aes-256-cbc", "aes-256-gcm"] = "aes-256-cbc"


class DatabaseConfig(_Section):
    url: str = "sqlite:///var/mailflow.db"
    echo: bool = False


class StorageConfig(_Section):
    path: str = "var"
    # where blobs (raw messages, photos, PDFs) live: "files" under <path>/blobs, or "database"
    # (the blob tables, so machines sharing the database share them; docs/decisions.md)
    blobs: Literal["files", "database"] = "files"
    # each blob is kept in the database in rows of at most this many sealed bytes
    chunk_bytes: int = Field(1024 * 1024, ge=4096, le=64 * 1024 * 1024)


class WebConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    secret_key_file: str = ""  # signs session cookies; empty: <storage>/keys/web.key (0600)
    # Unless set, both follow public_url: True when it is https:// (cookies only over HTTPS;
    # browsers told to use HTTPS only, Strict-Transport-Security, for hsts_max_age_seconds).
    secure_cookies: bool = False
    hsts: bool = False
    hsts_max_age_seconds: int = Field(365 * 24 * 3600, gt=0)
    session_minutes: int = Field(480, gt=0)  # a sign-in lasts this long, then sign in again
    overview_limit: int = Field(500, gt=0)  # rows on the overview page (counts cover all)
    public_url: str = ""  # how people reach the web, for links in emails; "": http://host:port
    shutdown_seconds: int = Field(5, ge=0)  # requests still running get this long at a stop
    code_minutes: float = Field(5, gt=0)  # time to type the authenticator code after the password
    require_totp_for_admins: bool = False  # admins must set up an authenticator before admin pages

    @model_validator(mode="before")
    @classmethod
    def _tls_follows_public_url(cls, data: Any) -> Any:
        if isinstance(data, dict):
            https = str(data.get("public_url", "")).strip().lower().startswith("https://")
            data = {"secure_cookies": https, "hsts": https, **data}
        return data


class SigninConfig(_Section):
    """One lockout for SMTP AUTH and web sign-in (password and authenticator code steps);
    the rules are spelled out in mailflow/trust/lockout.py and the README."""

    attempts: int = Field(5, gt=0)  # failures for one login from one address: that pair locks
    login_attempts: int = Field(20, gt=0)  # for one login from all addresses: the login locks
    window_minutes: float = Field(15, gt=0)  # failures count from the first for this long
    lock_minutes: float = Field(15, gt=0)  # how long a lock lasts
    known_address_days: float = Field(90, gt=0)  # a success makes an address known this long
    slow_after: int = Field(5, gt=0)  # failures from one address before its attempts wait
    slow_seconds: float = Field(1.0, ge=0)  # the first wait; doubles with each further failure
    slow_max_seconds: float = Field(20.0, ge=0)  # the longest wait (a slow-down, not a refusal)
    # argon2id's cost for new password hashes (RFC 9106's second profile by default); a stored
    # hash keeps the cost it was made with, and is checked with it
    hash_time_cost: int = Field(3, ge=1)
    hash_memory_kib: int = Field(65536, ge=8)
    hash_parallelism: int = Field(4, ge=1)
    # hashes or checks at once in a process: each holds hash_memory_kib while it runs, and
    # one already runs hash_parallelism lanes on as many cores
    hash_concurrency: int = Field(1, ge=1)
    # a right password is remembered this long in the process that checked it (a keyed MAC
    # of it, never the password): a client signing in for each message pays argon2 once
    remember_minutes: float = Field(10, ge=0)


class BusConfig(_Section):
    enabled: bool = True  # False: no events; work is still found by polling, pages by reload
    # Where publishers send and subscribers listen, e.g. "tcp://10.0.0.5:5560" when the parts
    # run on several machines; empty: abstract Unix sockets named after the storage folder.
    publish: str = ""
    subscribe: str = ""
    queue_limit: int = Field(10_000, gt=0)  # events queued for a slow broker, then dropped
    linger_seconds: float = Field(1.0, ge=0)  # at exit, how long to wait for the broker to take
    connect_wait_seconds: float = Field(0.1, ge=0)  # the first event waits this long to connect
    live_heartbeat_seconds: float = Field(15.0, gt=0)  # keeps idle live pages' streams open

    @model_validator(mode="after")
    def _endpoints(self) -> BusConfig:
        for name in ("publish", "subscribe"):
            value = getattr(self, name)
            if value and not re.fullmatch(r"tcp://[^:/\s]+:\d{1,5}|ipc://\S+", value):
                raise ValueError(f"{name} = {value!r}: use tcp://HOST:PORT or ipc://PATH")
        return self


class SchedulesConfig(_Section):
    path: str = "schedules"


class TemplatesConfig(_Section):
    path: str = "templates"


class ImapConfig(_Section):
    """A mailbox on the organisation's mail server that mailflow empties (DESIGN §2): for sites
    whose cases@ address is an ordinary mailbox rather than mailflow's own SMTP door."""

    enabled: bool = False
    host: str = ""
    port: int = Field(993, ge=0, le=65535)
    security: Literal["tls", "starttls", "none"] = "tls"  # none: only to a loopback address
    tls_verify: bool = True
    ca_file: str = ""  # trust this CA (a site's own) instead of the system's
    username: str = ""
    password: str = ""  # better given as MAILFLOW_IMAP__PASSWORD
    mailbox: str = "INBOX"
    processed_mailbox: str = "mailflow/processed"  # each message moves here once spooled
    rejected_mailbox: str = "mailflow/too-large"  # over [smtp] max_message_bytes: left here
    default_rcpt: str = ""  # when the MTA left no Delivered-To: (empty: cases@ the domain)
    idle_seconds: float = Field(600, gt=0)  # IDLE is renewed this often (servers drop at 30 min)
    poll_seconds: float = Field(60, gt=0)  # servers without IDLE are asked this often
    timeout_seconds: float = Field(60, gt=0)  # a connection that stops answering is dropped
    reconnect_seconds: tuple[float, ...] = (2, 10, 30, 120, 300)  # after each failure in a row
    batch: int = Field(50, gt=0)  # messages per pass before looking for new ones again

    @model_validator(mode="after")
    def _usable(self) -> ImapConfig:
        if not self.enabled:
            return self
        missing = [k for k in ("host", "username", "password") if not getattr(self, k)]
        if missing:
            raise ValueError(f"IMAP intake is enabled but {', '.join(missing)} is not set")
        if self.security == "none" and self.host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("security = 'none' sends the password in clear: only to a "
                             "loopback address; use tls or starttls")
        if self.mailbox in (self.processed_mailbox, self.rejected_mailbox):
            raise ValueError("mailbox must differ from processed_mailbox and rejected_mailbox")
        return self


class IntakeConfig(_Section):
    max_depth: int = Field(8, gt=0)
    max_parts: int = Field(200, gt=0)
    max_headers: int = Field(500, gt=0)
    max_decoded_bytes: int = Field(60 * 1024 * 1024, gt=0)
    max_attachments: int = Field(40, gt=0)
    max_image_pixels: int = Field(60_000_000, gt=0)
    # all photos of one message together; photos past it are refused by name (send in a reply)
    max_pixels_per_message: int = Field(150_000_000, gt=0)
    max_attempts: int = Field(5, gt=0)  # processing tries before quarantine
    retry_backoff_seconds: tuple[int, ...] = (30, 120, 600, 1800)  # after each failed try
    lease_seconds: float = Field(300, gt=0)  # a claimed message is retried after this
    workers: int = Field(2, ge=1)  # processes that parse and decode photos
    worker_nice: int = Field(10, ge=0, le=19)  # their CPU priority below the door's and web's
    poll_seconds: float = Field(2.0, gt=0)


class WorkflowConfig(_Section):
    idle_close_days: float = Field(30, gt=0)  # a reviewed case with no message for this long


class PatientsConfig(_Section):
    """The patient over time (workflow/patient_history.py, README "The patient over time")."""

    earlier_consults: int = Field(10, ge=0)  # earlier cases summarised on a case (newest first)
    earlier_photo_cases: int = Field(2, ge=0)  # earlier cases whose photos sit beside the new
    email_earlier_photos: bool = True  # the dermatologist's case email attaches them too
    portal_patients: int = Field(200, gt=0)  # patients on a provider's portal home


class RetentionConfig(_Section):
    """How long raw messages and photos are kept (workflow/retention.py, README "Retention").

    Counted from the case's closing (an open case keeps everything), or from receipt for a
    message on no case. The case record itself (form, conversation, consults, the PDF report,
    which shows the photos) is the medical record and is not purged here.
    """

    enabled: bool = True  # False: the daily purge does not run (the CLI still can)
    raw_message_years: float = Field(6, gt=0)  # inbound and outbound emails as sent
    photo_years: float = Field(6, gt=0)  # original, cleaned, review and thumbnail copies
    # a blob file written or sent again this recently is never deleted: the same bytes may
    # have just arrived in a new message whose row is not committed yet; a file no row names
    # (workflow/orphans.py) waits as long, for the same reason
    reuse_grace_hours: float = Field(24, gt=0)
    run_at: str = Field("03:30", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")  # daily, UTC


class KeysConfig(_Section):
    """`mailflow keys rotate` (workflow/key_rotation.py, README "Rotating the encryption key")."""

    batch_size: int = Field(500, gt=0)  # rows per transaction, files between progress lines
    # a rest after each batch, to leave the disk and the database to the service
    pause_seconds: float = Field(0, ge=0)


class RecoveryConfig(_Section):
    """Finding the claims of a worker that stopped (mailflow/instances.py)."""

    # each worker process marks itself alive this often and looks for stopped ones
    heartbeat_seconds: float = Field(10, gt=0)
    # a worker on another machine (whose process cannot be looked up) silent this long has
    # stopped; its claims go back to the queue
    dead_after_seconds: float = Field(60, gt=0)

    @model_validator(mode="after")
    def _margin(self) -> RecoveryConfig:
        if self.dead_after_seconds < 3 * self.heartbeat_seconds:
            raise ValueError("dead_after_seconds must be at least 3 x heartbeat_seconds, or a "
                             "busy but running worker would be taken for a stopped one")
        return self


class TrustConfig(_Section):
    # Accept mail without SMTP AUTH only when a trusted upstream says DKIM/DMARC passed...
    trusted_relays: tuple[str, ...] = ()
    authserv_id: str = ""
    # ... or, in MX mode, when mailflow's own check finds DKIM or SPF aligned with From:
    check_dkim_dmarc: bool = False
    dns_resolver: str = ""  # "" = the system's (/etc/resolv.conf); "127.0.0.1:5353" = that one
    dns_timeout_seconds: float = Field(5, gt=0)  # per question; no answer: the message waits


class RegistrationConfig(_Section):
    """Registering and resetting a password on the web, and register@'s one reply."""

    min_fill_seconds: float = Field(3, ge=0)  # a form sent back faster than this is a bot's
    form_minutes: float = Field(60, gt=0)  # the sign-up form's signed token is good this long
    per_ip_per_hour: int = Field(10, gt=0)  # sign-up and forgot-password posts per client IP
    per_address_per_hour: int = Field(3, gt=0)  # ... and per email address typed in
    reset_link_minutes: float = Field(60, gt=0)  # a "forgot password" link works this long
    form_replies_per_day: int = Field(1, ge=0)  # register@ answers an unusable one with the form


class UploadsConfig(_Section):
    """Photos from a phone: the acknowledgement's link, and uploads sent in pieces."""

    link_days: float = Field(7, gt=0)  # the acknowledgement's "add photos" link works this long
    chunk_bytes: int = Field(512 * 1024, ge=16 * 1024)  # one piece of a file, one request
    max_file_bytes: int = Field(25 * 1024 * 1024, gt=0)  # one photo; a bigger one is refused
    max_files: int = Field(10, gt=0)  # photos sent at once (one email's worth)
    partial_hours: float = Field(24, gt=0)  # an upload not sent by then is deleted
    # one provider's photos announced and not yet sent (each counted as at least one piece):
    # what a client may make the server keep, so none can fill the disk
    max_pending_bytes: int = Field(256 * 1024 * 1024, gt=0)


class LoggingConfig(_Section):
    level: str = "INFO"


class Config(_Section):
    mail: MailConfig = MailConfig()
    smtp: SmtpConfig = SmtpConfig()
    imap: ImapConfig = ImapConfig()
    outbound: OutboundConfig = OutboundConfig()
    dkim: DkimConfig = DkimConfig()
    smime: SmimeConfig = SmimeConfig()
    database: DatabaseConfig = DatabaseConfig()
    storage: StorageConfig = StorageConfig()
    web: WebConfig = WebConfig()
    signin: SigninConfig = SigninConfig()
    bus: BusConfig = BusConfig()
    schedules: SchedulesConfig = SchedulesConfig()
    templates: TemplatesConfig = TemplatesConfig()
    intake: IntakeConfig = IntakeConfig()
    trust: TrustConfig = TrustConfig()
    workflow: WorkflowConfig = WorkflowConfig()
    recovery: RecoveryConfig = RecoveryConfig()
    registration: RegistrationConfig = RegistrationConfig()
    uploads: UploadsConfig = UploadsConfig()
    retention: RetentionConfig = RetentionConfig()
    patients: PatientsConfig = PatientsConfig()
    keys: KeysConfig = KeysConfig()
    logging: LoggingConfig = LoggingConfig()
    base_dir: Path = Path(".")

    def path(self, value: str) -> Path:
        """A configured path, relative ones taken from the config file's folder."""
        p = Path(value)
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def storage_dir(self) -> Path:
        return self.path(self.storage.path)

    @property
    def dkim_key_path(self) -> Path:
        if self.dkim.key_file:
            return self.path(self.dkim.key_file)
        return self.storage_dir / "dkim" / f"{self.dkim.selector}.key"

    def smime_path(self, which: Literal["key_file", "cert_file", "trust_anchors"]) -> Path:
        value = getattr(self.smime, which)
        default = {"key_file": "mailflow.key", "cert_file": "mailflow.pem",
                   "trust_anchors": "anchors.pem"}[which]
        return self.path(value) if value else self.storage_dir / "smime" / default

    @property
    def schedules_dir(self) -> Path:
        return self.path(self.schedules.path)

    @property
    def templates_dir(self) -> Path:
        return self.path(self.templates.path)

    @property
    def database_url(self) -> str:
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.path(url[len(prefix) :]))
        return url

    @property
    def web_url(self) -> str:
        return (self.web.public_url or f"http://{self.web.host}:{self.web.port}").rstrip("/")

    def address(self, local: str) -> str:
        return f"{local}@{self.mail.domain}"


def _env_overrides(environ: dict[str, str]) -> dict[str, dict[str, Any]]:
    sections = set(Config.model_fields) - {"base_dir"}
    out: dict[str, dict[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        if section not in sections:
            raise ConfigError(f"{name}: there is no [{section}] section in the configuration")
        out.setdefault(section, {})[key] = _env_value(raw)
    return out


def _env_value(raw: str) -> Any:
    """Environment values are strings; JSON lets lists and numbers through, pydantic coerces."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def load_config(path: Path | str | None = None, environ: dict[str, str] | None = None) -> Config:
    environ = dict(os.environ if environ is None else environ)
    if path is None:
        path = environ.get(DEFAULT_CONFIG_ENV, "config.toml")
    config_path = Path(path).resolve()
    data: dict[str, Any] = {}
    if config_path.exists():
        try:
            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_path}: not valid TOML: {exc}") from exc
    elif path != "config.toml":
        raise ConfigError(f"{config_path}: no such configuration file")
    for section, values in _env_overrides(environ).items():
        current = data.setdefault(section, {})
        if not isinstance(current, dict):
            raise ConfigError(f"[{section}] must be a table")
        current.update(values)
    data["base_dir"] = config_path.parent
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"configuration {config_path}: {problems}") from exc
