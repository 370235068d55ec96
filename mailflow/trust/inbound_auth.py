"""MX mode: mailflow checks a message's DKIM, SPF and DMARC alignment itself.

Where mail arrives straight from the internet there is no trusted upstream to ask, so the
worker runs this before routing (`[trust] check_dkim_dmarc`). The result is an RFC 8601
Authentication-Results value under mailflow's own authserv-id, kept on the message row, and
whether the From: domain is DMARC-aligned: a DKIM pass or an SPF pass for a domain that is
the From: domain (strict) or shares its organisational domain (relaxed, the default; the
domain's DMARC record picks with adkim/aspf). Alignment is required even when the domain
publishes no DMARC record: mail that proves nothing about its From: never reaches a case.

DNS that does not answer raises `DnsUnavailable` (the message waits and is retried): an
unanswered question is never a pass, and never a fail either.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import dkim
import spf
from dkim.util import InvalidTagValueList, parse_tag_value
from publicsuffixlist import PublicSuffixList

from mailflow.trust.dns import DnsUnavailable, Lookup

# Signatures checked per message: real mail carries one to three (author, list, ESP); each
# costs a DNS query, so a message with hundreds is not a way to make us ask hundreds.
MAX_SIGNATURES = 5
# What may stand as a domain in the header we write; anything else is left out, so a sender's
# text never becomes part of a result.
_DOMAIN = re.compile(r"^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$")
# pyspf reads its DNS function from a module global: one check at a time sets it.
_SPF_LOCK = threading.Lock()


@dataclass(frozen=True)
class DkimResult:
    domain: str  # d= (lowercased), "" when the signature could not be read
    selector: str
    result: str  # pass | fail | neutral | permerror
    why: str = ""  # for the admin: why not a pass


@dataclass(frozen=True)
class Checked:
    header: str  # the Authentication-Results value, authserv-id first (RFC 8601)
    aligned: bool  # a DKIM or SPF pass aligned with the From: domain
    how: str  # people-readable, for the verdict and a held message's reason


class _Reasons:
    """A logger for dkimpy that keeps the last error it reports (why a signature failed)."""

    def __init__(self) -> None:
        self.last = ""

    def error(self, msg: str, *args: Any) -> None:
        self.last = (msg % args) if args else msg

    def debug(self, *_args: Any, **_kwargs: Any) -> None:
        pass

    info = warning = debug

    def isEnabledFor(self, _level: int) -> bool:  # noqa: N802 (logging's name)
        return False


def _short(text: str) -> str:
    """The gist of a library's error: its first clause, without hashes and values."""
    return text.split(" (", 1)[0].split(": ", 1)[-1].strip()[:80] or "did not verify"


def _domain(value: bytes | str) -> str:
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    text = text.strip().lower().rstrip(".")
    return text if _DOMAIN.match(text) and len(text) <= 253 else ""


def check_dkim(raw: bytes, lookup: Lookup,
               worth: Callable[[str], bool] = lambda _domain: True) -> list[DkimResult]:
    """Each signature's result; a signature whose domain `worth` refuses is not checked (no
    DNS asked: a forger's unanswering domain must not hold up the verdict on a forgery)."""
    reasons = _Reasons()
    try:
        verifier = dkim.DKIM(raw, logger=reasons, timeout=int(lookup.timeout) or 1)
    except dkim.DKIMException:
        return []
    signatures = [v for k, v in verifier.headers if k.lower() == b"dkim-signature"]
    results = []
    for index, value in enumerate(signatures[:MAX_SIGNATURES]):
        try:
            tags = parse_tag_value(value)
        except InvalidTagValueList:
            results.append(DkimResult("", "", "permerror", "the signature cannot be read"))
            continue
        domain, selector = _domain(tags.get(b"d", b"")), _domain(tags.get(b"s", b""))
        if not worth(domain):
            results.append(DkimResult(domain, selector, "neutral",
                                      "not the From: domain's, so not checked"))
            continue
        signed = [h.strip().lower() for h in tags.get(b"h", b"").split(b":")]
        if b"from" not in signed:  # RFC 6376 5.4: From: must be signed (dkimpy only checks
            # when signing; its own signer cannot make such a signature, so no test makes one)
            results.append(DkimResult(domain, selector, "fail", "From: is not signed"))
            continue
        if b"l" in tags:  # a body length: anything may be appended after the signed part
            results.append(DkimResult(domain, selector, "policy",
                                      "signs only part of the body, l="))
            continue
        reasons.last = ""
        try:
            ok = verifier.verify(idx=index, dnsfunc=lookup.dkim_key)
        except dkim.DKIMException as exc:
            results.append(DkimResult(domain, selector, "fail", _short(str(exc))))
            continue
        if ok:
            results.append(DkimResult(domain, selector, "pass"))
        else:
            results.append(DkimResult(domain, selector, "fail",
                                      _short(reasons.last) if reasons.last else "bad signature"))
    return results


def check_spf(lookup: Lookup, peer: str, helo: str, mail_from: str,
              worth: Callable[[str], bool] = lambda _domain: True) -> tuple[str, str]:
    """(result, the domain it is about). "none" when the door did not see the sending server,
    or when `worth` refuses the domain (it could not count for From:, so DNS is not asked)."""
    if not peer:
        return "none", ""
    domain = _domain(mail_from.rpartition("@")[2]) if mail_from else _domain(helo)
    if not domain or not worth(domain):
        return "none", domain
    sender = mail_from or f"postmaster@{domain}"
    with _SPF_LOCK:
        saved = spf.DNSLookup
        spf.DNSLookup = lookup.spf_lookup
        try:
            result, _explanation = spf.check2(i=peer, s=sender, h=helo or domain,
                                              timeout=lookup.timeout)
        finally:
            spf.DNSLookup = saved
    if result == "temperror":
        raise DnsUnavailable(f"SPF for {domain}: temporary error")
    return result, domain


@cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # the list the package ships (kept current by its releases)


def org_domain(domain: str) -> str:
    """The organisational domain (RFC 7489 3.2): one label below the public suffix."""
    return _suffixes().privatesuffix(domain) or domain


def _aligned(domain: str, from_domain: str, mode: str) -> bool:
    if not domain:
        return False
    if mode == "s":
        return domain == from_domain
    return org_domain(domain) == org_domain(from_domain)


def dmarc_record(lookup: Lookup, from_domain: str) -> dict[str, str] | None:
    """The DMARC policy for `from_domain` (its own record, else its organisational domain's),
    as tags; None when there is none (or more than one, which RFC 7489 6.6.3 says is none)."""
    names = [from_domain]
    if org_domain(from_domain) != from_domain:
        names.append(org_domain(from_domain))
    for name in names:
        records = [r for r in lookup.txt(f"_dmarc.{name}") if r[:8].upper() == b"V=DMARC1"]
        if len(records) == 1:
            text = records[0].decode("ascii", "replace")
            pairs = (part.split("=", 1) for part in text.split(";") if "=" in part)
            return {k.strip().lower(): v.strip().lower() for k, v in pairs}
        if records:
            return None
    return None


def _dkim_part(r: DkimResult) -> str:
    props = "".join(f" header.{k}={v}" for k, v in (("d", r.domain), ("s", r.selector)) if v)
    comment = f" ({r.why})" if r.why and "(" not in r.why and ")" not in r.why else ""
    return f"dkim={r.result}{comment}{props}"


def _summary(dkims: list[DkimResult], spf_result: str, spf_domain: str) -> str:
    signed = "; ".join(
        f"DKIM {r.result} for {r.domain or 'an unreadable signature'}"
        + (f" ({r.why})" if r.why else "") for r in dkims) or "no DKIM signature"
    return f"{signed}; SPF {spf_result}" + (f" for {spf_domain}" if spf_domain else "")


def check(raw: bytes, *, from_addr: str, peer: str, helo: str, mail_from: str,
          lookup: Lookup, authserv_id: str) -> Checked:
    """DKIM, SPF and DMARC alignment of one message whose From: is `from_addr`."""
    from_domain = _domain(from_addr.rpartition("@")[2])

    def could_align(domain: str) -> bool:  # relaxed alignment: strict is a subset of it
        return bool(from_domain) and _aligned(domain, from_domain, "r")

    dkims = check_dkim(raw, lookup, could_align)
    spf_result, spf_domain = check_spf(lookup, peer, helo, mail_from, could_align)
    record = dmarc_record(lookup, from_domain) if from_domain else None
    adkim = (record or {}).get("adkim", "r")
    aspf = (record or {}).get("aspf", "r")
    by_dkim = [r.domain for r in dkims
               if r.result == "pass" and _aligned(r.domain, from_domain, adkim)]
    by_spf = spf_result == "pass" and _aligned(spf_domain, from_domain, aspf)
    aligned = bool(by_dkim) or by_spf

    parts = [_dkim_part(r) for r in dkims] or ["dkim=none"]
    parts.append(f"spf={spf_result}" + (f" smtp.mailfrom={spf_domain}" if spf_domain else ""))
    dmarc = "none" if record is None else "pass" if aligned else "fail"
    p = (record or {}).get("p", "")
    policy = f" (p={p})" if p in ("none", "quarantine", "reject") else ""
    parts.append(f"dmarc={dmarc}{policy}" + (f" header.from={from_domain}" if from_domain else ""))
    header = f"{authserv_id}; " + "; ".join(parts)

    if aligned:
        via = f"DKIM signature of {by_dkim[0]}" if by_dkim else f"SPF pass for {spf_domain}"
        how = f"{via}, aligned with the From: domain {from_domain} (checked by mailflow)"
    else:
        how = (f"nothing proves the message came from {from_domain or 'its From: domain'}: "
               f"no DKIM signature or SPF pass aligned with it, so From: may be forged "
               f"({_summary(dkims, spf_result, spf_domain)})")
    return Checked(header=header, aligned=aligned, how=how)
