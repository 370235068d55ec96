"""DNS for checking inbound mail: one resolver chosen in config, a timeout, and one rule.

A lookup that could not be answered (timeout, no server reachable, SERVFAIL) is `DnsUnavailable`:
the check cannot say pass or fail, so the message waits and is tried again. Only a real answer,
including "no such name" and "no such record", is a result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver


class DnsUnavailable(Exception):
    """DNS gave no answer (not even "no such name"): a temporary error, never a pass."""


def _nameserver(address: str) -> tuple[str, int]:
    """'127.0.0.1:5353', '127.0.0.1', '[::1]:53' or '::1' -> (host, port)."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, int(rest.lstrip(":") or 53)
    if address.count(":") == 1:
        host, _, port = address.partition(":")
        return host, int(port)
    return address, 53


@dataclass(frozen=True)
class Lookup:
    """Answers TXT and address questions through the configured resolver ("" = the system's)."""

    resolver_address: str = ""
    timeout: float = 5.0

    def _resolver(self) -> dns.resolver.Resolver:
        if not self.resolver_address:
            resolver = dns.resolver.Resolver()  # /etc/resolv.conf
        else:
            host, port = _nameserver(self.resolver_address)
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [host]
            resolver.port = port
        resolver.lifetime = self.timeout
        resolver.timeout = self.timeout
        return resolver

    def query(self, name: str, rdtype: str) -> list[Any]:
        """The records of one type at `name`; [] when the name or the type does not exist."""
        try:
            answer = self._resolver().resolve(name, rdtype, search=False,
                                               raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers,
                dns.resolver.NoResolverConfiguration, OSError) as exc:
            raise DnsUnavailable(f"{rdtype} {name}: {type(exc).__name__}") from exc
        except dns.exception.DNSException as exc:  # a name that cannot be asked: no record
            if isinstance(exc, dns.name.NameTooLong | dns.name.EmptyLabel | dns.name.LabelTooLong):
                return []
            raise DnsUnavailable(f"{rdtype} {name}: {type(exc).__name__}") from exc
        return list(answer.rrset or [])

    def txt(self, name: str) -> list[bytes]:
        """Each TXT record at `name`, its strings joined (RFC 7208 3.3, RFC 6376 3.6.2.2)."""
        return [b"".join(r.strings) for r in self.query(name, "TXT")]

    def dkim_key(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        """dkimpy's dnsfunc: the key record, or None when there is none."""
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        records = self.txt(text)
        return records[0] if records else None

    def spf_lookup(self, name: str, qtype: str, strict: bool = True,
                   timeout: float = 20) -> list[tuple[tuple[str, str], Any]]:
        """pyspf's DNSLookup, in its (name, type), value form."""
        out: list[tuple[tuple[str, str], Any]] = []
        for rdata in self.query(name, qtype):
            if qtype in ("A", "AAAA"):
                out.append(((name, qtype), rdata.address))
            elif qtype == "MX":
                out.append(((name, qtype), (rdata.preference, rdata.exchange)))
            elif qtype == "PTR":
                out.append(((name, qtype), rdata.target.to_text(True)))
            elif qtype in ("TXT", "SPF"):
                out.append(((name, qtype), rdata.strings))
        return out
