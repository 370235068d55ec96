"""The application context: configuration, keys, blob store and database, opened once."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mailflow.bus import Publisher, attach
from mailflow.config import Config
from mailflow.crypto import openssl_cms
from mailflow.crypto.dkim import Signer as DkimSigner
from mailflow.crypto.dkim import create_key as create_dkim_key
from mailflow.crypto.keys import Keyring, create_master_key
from mailflow.crypto.keyset import KeySet
from mailflow.crypto.smime_certs import Identity as SmimeIdentity
from mailflow.crypto.smime_certs import SmimeKeyError
from mailflow.db.session import make_engine, make_sessionmaker, migrate
from mailflow.db.types import install_keys
from mailflow.sla.calendar import load_calendar
from mailflow.sla.clock import SlaContext
from mailflow.sla.clock import bind as bind_clock
from mailflow.sla.policy import load_policies
from mailflow.sla.roster import Roster, load_roster
from mailflow.store.blobs import Blobs, BlobStore
from mailflow.store.db_blobs import DatabaseBlobStore
from mailflow.store.tls import create_self_signed
from mailflow.trust.passwords import set_cost as set_password_cost
from mailflow.trust.passwords import set_remember as remember_passwords

log = logging.getLogger(__name__)


@dataclass
class App:
    config: Config
    keys: Keyring
    blobs: Blobs  # [storage] blobs: files, or the database (open_blobs)
    engine: Engine
    sessions: sessionmaker[Session]
    roster: Roster
    sla: SlaContext
    bus: Publisher
    dkim: DkimSigner | None  # None: [dkim] enabled = false, mail leaves unsigned
    smime: SmimeIdentity | None = None  # None: [smime] enabled = false

    @classmethod
    def open(cls, config: Config) -> App:
        keys = Keyring.load(config.storage_dir)
        signer = _dkim_signer(config)  # before anything opens: a missing key stops start-up
        smime = _smime_identity(config)
        install_keys(keys.sealing)
        signin = config.signin
        set_password_cost(signin.hash_time_cost, signin.hash_memory_kib, signin.hash_parallelism,
                          signin.hash_concurrency)
        remember_passwords(signin.remember_minutes)
        engine = make_engine(config.database_url, echo=config.database.echo)
        sla = SlaContext(
            calendar=load_calendar(config.schedules_dir / "calendar.toml"),
            policies=load_policies(config.schedules_dir / "sla.toml"),
        )
        sessions = make_sessionmaker(engine)
        bind_clock(sessions, sla)  # the clock follows every state change made in them
        bus = Publisher(config)
        attach(sessions, bus)
        return cls(
            config=config,
            keys=keys,
            blobs=open_blobs(config, engine, keys.sealing, keys.blob_name_key),
            engine=engine,
            sessions=sessions,
            roster=load_roster(config.schedules_dir / "roster.toml"),
            sla=sla,
            bus=bus,
            dkim=signer,
            smime=smime,
        )

    def close(self) -> None:
        self.bus.close()
        self.engine.dispose()


def open_blobs(config: Config, engine: Engine, keys: KeySet, name_key: bytes,
               where: str = "") -> Blobs:
    """The blob store `where` says ("files" or "database"; default: `[storage] blobs`)."""
    if (where or config.storage.blobs) == "database":
        return DatabaseBlobStore(engine, keys, name_key, config.storage.chunk_bytes)
    return BlobStore(config.storage_dir / "blobs", keys, name_key)


def _dkim_signer(config: Config) -> DkimSigner | None:
    if not config.dkim.enabled:
        return None
    return DkimSigner.load(config.dkim_key_path, config.mail.domain, config.dkim.selector,
                           config.dkim.headers)


def _smime_identity(config: Config) -> SmimeIdentity | None:
    if not config.smime.enabled:
        return None
    if not openssl_cms.available():  # verification and AES-GCM need it: stop at start-up
        raise SmimeKeyError("[smime] enabled needs the openssl command (Debian: openssl)")
    return SmimeIdentity.load(config.smime_path("key_file"), config.smime_path("cert_file"),
                              config.smime_path("trust_anchors"), config.smime.encryption)


def initialise(config: Config) -> list[str]:
    """Create var/ (keys, TLS certificate, folders) and migrate the database. Idempotent."""
    done: list[str] = []
    storage: Path = config.storage_dir
    storage.mkdir(parents=True, exist_ok=True)
    storage.chmod(0o700)
    if create_master_key(storage):
        done.append(f"created the encryption key in {storage / 'keys'}")
    if create_self_signed(storage, config.smtp.hostname or config.mail.domain):
        done.append(f"created a self-signed TLS certificate in {storage / 'tls'}")
    if config.dkim.enabled and create_dkim_key(config.dkim_key_path, config.dkim.key_bits):
        done.append(f"created the DKIM signing key {config.dkim_key_path} (publish its DNS "
                    "record: mailflow dkim dns)")
    if config.storage.blobs == "files":
        (storage / "blobs").mkdir(exist_ok=True)
    app = App.open(config)
    try:
        migrate(app.engine)
    finally:
        app.close()
    done.append("database migrated to the latest schema")
    return done
