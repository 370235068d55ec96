"""mailflow dkim dns: the TXT record that lets receivers check our DKIM signatures."""

from __future__ import annotations

import argparse

from mailflow.cli.cases import CliError
from mailflow.cli.output import emit_json
from mailflow.config import Config
from mailflow.crypto.dkim import dns_record, load_key

DNS_HELP = """\
Print the DNS TXT record to publish for the DKIM key that signs every outgoing message
(made by `mailflow init`). The value is cut into strings of at most 255 characters, as DNS
requires; receivers join them. The lines starting with ';' are zone-file comments."""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    cmd = sub.add_parser("dkim", help="DKIM signing of outgoing mail: the DNS record")
    cmds = cmd.add_subparsers(dest="action", required=True)
    dns = cmds.add_parser("dns", help="the TXT record to publish", description=DNS_HELP)
    dns.add_argument("--json", action="store_true")
    dns.set_defaults(handler=cmd_dns, needs_app=False)


def cmd_dns(config: Config, args: argparse.Namespace) -> int:
    if not config.dkim.enabled:
        raise CliError("DKIM signing is off ([dkim] enabled = false): there is no record to "
                       "publish")
    record = dns_record(load_key(config.dkim_key_path), config.dkim.selector, config.mail.domain)
    if args.json:
        emit_json({"name": record.name, "type": "TXT", "value": record.value,
                   "strings": record.strings, "selector": config.dkim.selector,
                   "domain": config.mail.domain, "key_file": str(config.dkim_key_path)})
        return 0
    print(f"; publish in the DNS of {config.mail.domain}: receivers check the signature of "
          "every message mailflow sends with it")
    print(record.zone_line)
    return 0
