"""Sender trust from a relay's Authentication-Results, read as RFC 8601 reads it (issue #11)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailflow.config import TrustConfig
from mailflow.db.models import InboundMessage
from mailflow.parse.mime import parse_message
from mailflow.trust.sender import Verdict, verify

RELAY = "192.0.2.25"
AUTHSERV = "mx.derm.test"
TRUST = TrustConfig(trusted_relays=(RELAY,), authserv_id=AUTHSERV)
RECEIVED = "Received: from mail.clinic.test by mx.derm.test; Mon, 2 Nov 2026 10:00 -0500\r\n"


def verdict(*results: str, sender: str = "dr.family@clinic.test", peer: str = RELAY,
            below: str = "") -> Verdict:
    """What verify() says of a message whose relay added these Authentication-Results."""
    top = "".join(f"Authentication-Results: {value}\r\n" for value in results)
    raw = (top + RECEIVED + below + f"From: Dr Family <{sender}>\r\nTo: cases@derm.test\r\n"
           "Subject: New case\r\n\r\nPatient name: Jane Testpatient\r\n").encode(
               errors="surrogateescape")
    return verify(InboundMessage(peer=peer, auth_user=""), parse_message(raw), TRUST)


@pytest.mark.parametrize(
    "value",
    [
        f"{AUTHSERV}; dkim=pass header.d=clinic.test header.s=sel1",
        f"{AUTHSERV}; dmarc=pass (p=reject dis=none) header.from=clinic.test",
        f"{AUTHSERV} 1; spf=pass smtp.mailfrom=clinic.test; dkim=pass header.d=Clinic.Test.",
        "MX.Derm.Test; dkim=pass (2048-bit key) header.d=clinic.test header.i=@clinic.test",
        # Microsoft writes words that are not RFC 8601 properties; the result still stands
        f"{AUTHSERV}; spf=pass; dkim=none; dmarc=pass action=none header.from=clinic.test",
        f"{AUTHSERV};\r\n\tdkim=pass header.d=clinic.test",  # folded
    ],
)
def test_a_pass_for_the_from_domain_verifies(value: str) -> None:
    result = verdict(value)
    assert result.verified, result.how
    assert "clinic.test" in result.how and AUTHSERV in result.how


@pytest.mark.parametrize(
    "value",
    [
        # the attack: the relay copies the sender's MAIL FROM into a quoted value
        f'{AUTHSERV}; spf=pass smtp.mailfrom="dkim=pass header.d=clinic.test x"@evil.test; '
        "dmarc=fail header.from=clinic.test",
        # the same words in comments
        f"{AUTHSERV}; spf=pass (dkim=pass header.d=clinic.test) smtp.mailfrom=evil.test",
        f"{AUTHSERV} (dkim=pass header.d=clinic.test); spf=pass smtp.mailfrom=evil.test",
        f"{AUTHSERV}; dkim=fail (dmarc=pass header.from=clinic.test) header.d=clinic.test",
        # as an RFC 2047 encoded word that decodes to '"x"; dkim=pass header.d=clinic.test ...'
        f'{AUTHSERV}; spf=pass smtp.mailfrom="=?us-ascii?q?x=22=3B_dkim=3Dpass_header.d=3D'
        'clinic.test_header.x=3D=22?="@evil.test; dmarc=fail header.from=clinic.test',
        # a pass whose domain is another one, or not the one that passed
        f"{AUTHSERV}; dkim=pass header.d=evil.test",
        f"{AUTHSERV}; dkim=pass header.d=mail.clinic.test",  # strict alignment
        f"{AUTHSERV}; dkim=pass header.i=@clinic.test header.d=evil.test",
        f"{AUTHSERV}; dkim=pass header.d=evil.test; dkim=fail header.d=clinic.test",
        f"{AUTHSERV}; dkim=pass header.d=clinic.test header.d=evil.test",
        f"{AUTHSERV}; dmarc=pass header.from=evil.test",
        f"{AUTHSERV}; spf=pass smtp.mailfrom=clinic.test",  # SPF says nothing about From:
        f"{AUTHSERV}; dkim=pass header.from=clinic.test",  # DKIM's domain is header.d
        f"{AUTHSERV}; dkim=neutral header.d=clinic.test",
        f"{AUTHSERV}; none",
        # another server's results, or a name that only starts like ours
        "mx.evil.test; dkim=pass header.d=clinic.test",
        "mx.derm.test.evil.test; dmarc=pass header.from=clinic.test",
    ],
)
def test_anything_else_is_unverified(value: str) -> None:
    assert not verdict(value).verified


def test_one_passing_header_among_several_verifies() -> None:
    assert verdict(
        "mx.evil.test; dkim=pass header.d=evil.test",
        f"{AUTHSERV}; spf=fail smtp.mailfrom=clinic.test",
        f"{AUTHSERV}; dkim=pass header.d=clinic.test",
    ).verified


@pytest.mark.parametrize(
    "value",
    [
        f"{AUTHSERV}; dkim=pass header.d=clinic.test (unclosed comment",
        f'{AUTHSERV}; dkim=pass header.d="clinic.test',
        f"{AUTHSERV}; dkim=pass header.d=clinic.test; ;; junk ==",
        f"{AUTHSERV}; =pass header.d=clinic.test",
        f"{AUTHSERV} 2; dkim=pass header.d=clinic.test",  # a version we do not know
        f"{AUTHSERV}",
        "",
        ";;;",
        "(((((",
        f"{AUTHSERV}; dkim=pass header.d=clinic.test\udcff",  # a raw 8-bit byte
        f"{AUTHSERV}; " + "dkim=pass (" * 200 + "x",
    ],
)
def test_a_malformed_header_never_crashes_and_is_unverified(value: str) -> None:
    result = verdict(value)
    assert not result.verified
    assert "did not report" in result.how


def test_an_unreadable_header_of_our_relay_is_named() -> None:
    result = verdict(f"{AUTHSERV}; dkim pass header.d=clinic.test")
    assert "could not be read" in result.how
    assert "could not be read" not in verdict("mx.other.test; dkim pass").how


def test_an_overlong_header_is_not_read() -> None:
    padding = "; ".join(f"dkim=fail header.d=d{i}.test" for i in range(200))
    result = verdict(f"{AUTHSERV}; {padding}; dkim=pass header.d=clinic.test")
    assert not result.verified and "could not be read" in result.how


def test_results_below_the_first_received_were_written_by_the_sender() -> None:
    planted = f"Authentication-Results: {AUTHSERV}; dkim=pass header.d=clinic.test\r\n"
    assert not verdict(f"{AUTHSERV}; dkim=none", below=planted).verified


def test_results_count_only_from_a_trusted_relay() -> None:
    result = verdict(f"{AUTHSERV}; dkim=pass header.d=clinic.test", peer="198.51.100.7")
    assert not result.verified and "not through a trusted relay" in result.how


def test_the_reason_a_forgery_fails_is_readable() -> None:
    how = verdict(f"{AUTHSERV}; dkim=pass header.d=evil.test").how
    assert how == "mx.derm.test did not report DKIM or DMARC pass for clinic.test"


TOKENS = ["mx.derm.test", "; ", ";", " ", "dkim", "dmarc", "spf", "=", "pass", "fail", "header",
          ".", "d", "from", "clinic.test", "evil.test", "smtp.mailfrom", '"', "(", ")", "\\",
          "@", "\t", "é", "1"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map("".join))
def test_no_header_text_crashes_the_check(value: str) -> None:
    result = verdict(f"{AUTHSERV}; {value}")
    assert not result.verified or "pass" in value
