"""XFORWARD's attributes as Postfix sends them (xtext, [UNAVAILABLE], several commands per
transaction), and what is refused with 501."""

from __future__ import annotations

import pytest

from mailflow.intake.xforward import Forwarded, update


def test_postfix_s_commands_build_up_one_client() -> None:
    first = update(None, "NAME=mail.clinic.test ADDR=192.0.2.7 PORT=41234 PROTO=ESMTP")
    both = update(first, "HELO=mail.clinic.test SOURCE=REMOTE IDENT=3F2A1B")
    assert both == Forwarded(addr="192.0.2.7", helo="mail.clinic.test", name="mail.clinic.test",
                             proto="ESMTP", source="REMOTE")


def test_unavailable_values_and_a_local_submission() -> None:
    local = update(None, "NAME=[UNAVAILABLE] ADDR=[UNAVAILABLE] PROTO=UNKNOWN SOURCE=LOCAL")
    assert local.addr == "" and local.describe() == "a local submission"
    named = update(update(None, "ADDR=192.0.2.7"), "addr=[unavailable]")  # any case
    assert named.addr == ""


def test_xtext_and_ipv6() -> None:
    assert update(None, "HELO=odd+2Bname").helo == "odd+name"
    assert update(None, "ADDR=IPv6:2001:DB8::1").addr == "2001:db8::1"


@pytest.mark.parametrize("arg", [
    "", "ADDR", "COLOR=red", "ADDR=mail.clinic.test", "HELO=a+0Ab", "HELO=" + "a" * 256,
    "HELO=caf\u00e9",
])
def test_what_is_refused(arg: str) -> None:
    with pytest.raises(ValueError):
        update(None, arg)


def test_xforward_hosts_are_ip_addresses() -> None:
    from mailflow.config import SmtpConfig

    assert SmtpConfig(xforward_hosts=["127.0.0.2", " ::1"]).xforward_hosts == ("127.0.0.2", "::1")
    with pytest.raises(ValueError, match="xforward_hosts takes IP addresses"):
        SmtpConfig(xforward_hosts=["mx.derm.example.org"])  # would never match a client
