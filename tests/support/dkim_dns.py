"""The DKIM record `mailflow dkim dns` prints, read back as a resolver would, for verifying
what mailflow signed with dkimpy (an independent verifier) against nothing else."""

from __future__ import annotations

import re
from collections.abc import Callable

from mailflow.config import Config
from tests.support.cli import run_cli

DnsFunc = Callable[..., bytes | None]


def printed_record(config: Config) -> tuple[str, str]:
    """The record's name and value as `mailflow dkim dns` printed them (its zone-file line:
    the value in quoted strings of at most 255 characters, joined as a resolver joins them)."""
    out = run_cli(config, "dkim", "dns").stdout
    [line] = [line for line in out.splitlines() if line and not line.startswith(";")]
    strings = re.findall(r'"([^"]*)"', line)
    assert all(len(s) <= 255 for s in strings) and " IN TXT " in line
    return line.split()[0].rstrip("."), "".join(strings)


def dns_answering(name: str, value: str) -> DnsFunc:
    """A resolver that knows one TXT record, for dkimpy's verifier."""

    def lookup(qname: bytes, timeout: float = 5) -> bytes | None:
        return value.encode() if qname.decode().rstrip(".").lower() == name.lower() else None

    return lookup
