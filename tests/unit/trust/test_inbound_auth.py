"""MX mode's alignment rules (trust/inbound_auth.py) with DNS answered from a table: relaxed and
strict alignment, organisational domains, a header built only from checked values, and DNS
that does not answer. The whole path through the door is tests/e2e/test_inbound_dmarc.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import dkim
import pytest

from mailflow.trust.dns import DnsUnavailable, Lookup
from mailflow.trust.inbound_auth import Checked, check, org_domain
from tests.support.dns import signing_key


@cache
def _key() -> tuple[bytes, bytes]:
    pem, record = signing_key()
    return pem, record.encode()


@dataclass(frozen=True)
class TableLookup(Lookup):
    """DNS answered from a dict; `down` answers nothing at all, `silent` nothing for names in
    those domains."""

    table: dict[str, list[bytes]] = field(default_factory=dict)
    down: bool = False
    silent: tuple[str, ...] = ()

    def txt(self, name: str) -> list[bytes]:
        if self.down or name.lower().rstrip(".").endswith(self.silent):
            raise DnsUnavailable(f"TXT {name}: Timeout")
        return self.table.get(name.lower().rstrip("."), [])


def message(from_addr: str, signer: str | None) -> bytes:
    raw = (f"From: Dr Family <{from_addr}>\r\nTo: cases@derm.test\r\nSubject: New case\r\n\r\n"
           "Patient name: Jane Testpatient\r\n").encode()
    if signer is None:
        return raw
    return dkim.sign(raw, b"s1", signer.encode(), _key()[0], include_headers=[b"from"]) + raw


def run(from_addr: str, signer: str | None, dmarc: bytes | None = None,
        **lookup: object) -> Checked:
    signer_key = {f"s1._domainkey.{signer}": [_key()[1]]} if signer else {}
    policy = {f"_dmarc.{org_domain(from_addr.rpartition('@')[2])}": [dmarc]} if dmarc else {}
    table = TableLookup(table={**signer_key, **policy}, **lookup)  # type: ignore[arg-type]
    return check(message(from_addr, signer), from_addr=from_addr, peer="", helo="",
                 mail_from=from_addr, lookup=table, authserv_id="mx.derm.test")


@pytest.mark.parametrize(
    "from_addr, signer, dmarc, aligned",
    [
        ("dr@clinic.test", "clinic.test", None, True),
        ("dr@clinic.test", "mail.clinic.test", None, True),  # relaxed: same organisation
        ("dr@clinic.test", "mail.clinic.test", b"v=DMARC1; p=reject; adkim=s", False),
        ("dr@mail.clinic.test", "clinic.test", b"v=DMARC1; p=reject", True),
        ("dr@clinic.test", "clinic.test.evil.test", None, False),
        # the Public Suffix List: co.uk is a suffix, not an organisation
        ("dr@clinic.co.uk", "other.co.uk", None, False),
        ("dr@clinic.co.uk", "mx.clinic.co.uk", None, True),
        ("dr@clinic.test", None, None, False),
    ],
)
def test_alignment(from_addr: str, signer: str | None, dmarc: bytes | None,
                   aligned: bool) -> None:
    result = run(from_addr, signer, dmarc)
    assert result.aligned is aligned, result.header
    if signer is None:
        return
    if org_domain(signer) == org_domain(from_addr.rpartition("@")[2]):
        assert f"dkim=pass header.d={signer} header.s=s1" in result.header
    else:  # could never align: its key is not even looked up
        assert (f"dkim=neutral (not the From: domain's, so not checked) header.d={signer}"
                in result.header)


def test_a_forgers_signature_whose_dns_never_answers_does_not_hold_up_the_verdict() -> None:
    # the forger signs with a domain of their own whose DNS never answers: had its key been
    # looked up, the message would wait and retry, then fail as "processing", not as forged
    result = run("dr@clinic.test", "forger.test", silent=("forger.test",))
    assert not result.aligned and "From: may be forged" in result.how


def test_a_dmarc_record_is_reported_with_its_policy() -> None:
    assert run("dr@clinic.test", None, b"v=DMARC1; p=reject").header == (
        "mx.derm.test; dkim=none; spf=none; dmarc=fail (p=reject) header.from=clinic.test")
    assert run("dr@clinic.test", "clinic.test").header.endswith(
        "dmarc=none header.from=clinic.test")


def test_a_signature_domain_that_is_no_domain_never_reaches_the_header() -> None:
    raw = message("dr@clinic.test", "clinic.test").replace(
        b"d=clinic.test", b"d=clinic.test dkim=pass")
    result = check(raw, from_addr="dr@clinic.test", peer="", helo="", mail_from="",
                   lookup=TableLookup(), authserv_id="mx.derm.test")
    assert not result.aligned
    assert "dkim=pass" not in result.header and "header.d=" not in result.header


def test_dns_that_does_not_answer_is_neither_pass_nor_fail() -> None:
    with pytest.raises(DnsUnavailable):
        run("dr@clinic.test", "clinic.test", down=True)


def test_a_signature_of_part_of_the_body_does_not_count() -> None:
    # l= lets anything be appended after the signed part: a forger's case under a real signature
    raw = (b"From: Dr Family <dr@clinic.test>\r\nTo: cases@derm.test\r\nSubject: New case\r\n"
           b"\r\nPatient name: Jane Testpatient\r\n")
    signed = dkim.sign(raw, b"s1", b"clinic.test", _key()[0], include_headers=[b"from"],
                       length=True) + raw
    table = TableLookup(table={"s1._domainkey.clinic.test": [_key()[1]]})
    result = check(signed + b"Patient name: Someone Else\r\n", from_addr="dr@clinic.test",
                   peer="", helo="", mail_from="dr@clinic.test", lookup=table,
                   authserv_id="mx.derm.test")
    assert not result.aligned
    assert "dkim=policy (signs only part of the body, l=)" in result.header
