"""The outgoing maildir (no relay configured) holds plaintext mail: only its owner may read it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mailflow.app import App, initialise
from mailflow.config import Config
from mailflow.db.session import transaction
from mailflow.outbound.delivery import deliver_due
from mailflow.outbound.outbox import Email, queue
from tests.conftest import make_config


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def deliver_one(config: Config, to: str) -> None:
    app = App.open(config)
    try:
        with transaction(app.sessions) as session:
            queue(app, session, Email(kind="help", template="help", to=to))
        assert deliver_due(app) == 1
    finally:
        app.close()


def test_maildir_files_are_0600_and_folders_0700_even_with_a_lax_umask(
    tmp_path: Path, db_url: str
) -> None:
    config = make_config(tmp_path, db_url)
    assert not config.outbound.relay_host
    initialise(config)
    maildir = config.path(config.outbound.maildir_path)
    old = os.umask(0o002)  # what a shared workstation often has
    try:
        deliver_one(config, "dr.family@clinic.test")
    finally:
        os.umask(old)
    [mail] = list((maildir / "new").iterdir())
    assert b"dr.family@clinic.test" in mail.read_bytes()
    assert mode(mail) == 0o600
    for folder in (maildir, maildir / "tmp", maildir / "new", maildir / "cur"):
        assert mode(folder) == 0o700, folder


def test_a_maildir_made_open_by_an_older_version_is_tightened(
    tmp_path: Path, db_url: str
) -> None:
    config = make_config(tmp_path, db_url)
    initialise(config)
    maildir = config.path(config.outbound.maildir_path)
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    for folder in (maildir, maildir / "tmp", maildir / "new", maildir / "cur"):
        folder.chmod(0o755)
    deliver_one(config, "dr.family@clinic.test")
    for folder in (maildir, maildir / "tmp", maildir / "new", maildir / "cur"):
        assert mode(folder) == 0o700, folder
