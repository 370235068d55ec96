"""The DKIM key `mailflow init` makes, its DNS record, the signer, and the [dkim] settings."""

from __future__ import annotations

import base64
import stat
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mailflow.config import DKIM_SIGNED_HEADERS, ConfigError, load_config
from mailflow.crypto.dkim import DkimKeyError, Signer, create_key, dns_record, load_key


@pytest.fixture(scope="module")
def key_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dkim") / "dkim" / "mailflow.key"
    assert create_key(path, 2048)
    return path


def test_the_key_is_rsa_2048_readable_by_its_owner_only_and_made_once(key_path: Path) -> None:
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_path.parent.stat().st_mode) == 0o700
    assert key_path.read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    before = key_path.read_bytes()
    assert not create_key(key_path, 2048)
    assert key_path.read_bytes() == before
    assert load_key(key_path).key_size == 2048


def test_the_dns_record_carries_the_public_key_in_strings_of_255_at_most(key_path: Path) -> None:
    key = load_key(key_path)
    record = dns_record(key, "mailflow", "derm.example.org")
    assert record.name == "mailflow._domainkey.derm.example.org"
    prefix = "v=DKIM1; k=rsa; p="
    assert record.value.startswith(prefix)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    assert base64.b64decode(record.value[len(prefix):]) == der
    assert len(record.strings) == 2 and all(len(s) <= 255 for s in record.strings)
    assert "".join(record.strings) == record.value
    assert record.zone_line == (f"mailflow._domainkey.derm.example.org. IN TXT "
                                f'( "{record.strings[0]}" "{record.strings[1]}" )')


def test_a_signed_message_verifies_and_a_changed_one_does_not(key_path: Path) -> None:
    msg = EmailMessage()
    msg["From"] = "cases@derm.example.org"
    msg["To"] = "dr@clinic.test"
    msg["Subject"] = "Your consult"
    msg.set_content("The answer.\n")
    signer = Signer.load(key_path, "derm.example.org", "mailflow", DKIM_SIGNED_HEADERS)
    signed = signer.sign(msg.as_bytes(policy=SMTP_POLICY))
    assert signed.startswith(b"DKIM-Signature: ")
    record = dns_record(load_key(key_path), "mailflow", "derm.example.org")

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        return record.value.encode() if name.rstrip(b".") == record.name.encode() else None

    assert dkim.verify(signed, dnsfunc=lookup)
    assert not dkim.verify(signed.replace(b"The answer.", b"The answez."), dnsfunc=lookup)
    # a Reply-To added on the way is caught: absent headers are signed as absent
    assert not dkim.verify(signed.replace(b"\r\nTo: ", b"\r\nReply-To: x@evil.test\r\nTo: ", 1),
                           dnsfunc=lookup)


def test_a_missing_or_unusable_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(DkimKeyError, match="mailflow init"):
        load_key(tmp_path / "none.key")
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key")
    with pytest.raises(DkimKeyError, match="not a PEM private key"):
        load_key(garbage)
    small = tmp_path / "ec.key"
    small.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(DkimKeyError, match="RSA key of 2048"):
        load_key(small)


def test_dkim_settings_and_their_environment_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[storage]\npath = "data"\n[dkim]\nselector = "s2026"\n')
    config = load_config(cfg, environ={})
    assert config.dkim.enabled and config.dkim.algorithm == "rsa-sha256"
    assert config.dkim_key_path == tmp_path / "data" / "dkim" / "s2026.key"
    assert "Auto-Submitted" in config.dkim.headers and "Reply-To" in config.dkim.headers
    env = {"MAILFLOW_DKIM__ENABLED": "false", "MAILFLOW_DKIM__KEY_FILE": "/etc/dkim/site.key",
           "MAILFLOW_DKIM__HEADERS": '["From", "Subject"]'}
    overridden = load_config(cfg, environ=env)
    assert not overridden.dkim.enabled and overridden.dkim.headers == ("From", "Subject")
    assert overridden.dkim_key_path == Path("/etc/dkim/site.key")
    for env, words in [({"MAILFLOW_DKIM__HEADERS": '["Subject"]'}, "must include From"),
                       ({"MAILFLOW_DKIM__SELECTOR": "bad selector"}, "dkim.selector"),
                       ({"MAILFLOW_DKIM__ALGORITHM": "rsa-sha1"}, "dkim.algorithm"),
                       ({"MAILFLOW_DKIM__KEY_BITS": "1024"}, "dkim.key_bits")]:
        with pytest.raises(ConfigError, match=words):
            load_config(cfg, environ=env)
