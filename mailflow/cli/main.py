"""The `mailflow` command: the admin's and the scripts' interface (DESIGN §7)."""

from __future__ import annotations

import argparse
import logging
import resource
import sys
from collections.abc import Sequence

from mailflow import audit
from mailflow.app import App, initialise
from mailflow.bus import BusError
from mailflow.cli import (
    backup,
    blobs,
    cases,
    dkim,
    keys,
    messages,
    patients,
    retention,
    sample,
    sla,
    users,
)
from mailflow.cli.cases import CliError
from mailflow.cli.output import emit_json
from mailflow.config import Config, ConfigError, load_config
from mailflow.crypto.keys import KeyError_
from mailflow.sla.calendar import CalendarError
from mailflow.sla.policy import PolicyError
from mailflow.sla.roster import RosterError
from mailflow.workflow.accounts import AccountError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailflow", description=__doc__)
    parser.add_argument("--config", help="config file (default: $MAILFLOW_CONFIG or ./config.toml)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "init", help="create var/ (database, keys, DKIM key, TLS certificate), migrate"
    ).set_defaults(handler=cmd_init, needs_app=False)
    serve = sub.add_parser("serve", help="every part in one process (or those of --parts)")
    serve.add_argument("--parts", type=_part_names, default=None,
                       help="comma-separated, of: bus, smtp, imap, worker, reports, outbox, "
                            "scheduler, web")
    serve.set_defaults(handler=cmd_serve)
    sub.add_parser("web", help="the admin web only").set_defaults(
        handler=cmd_serve, parts=("web",)
    )
    sub.add_parser("scheduler", help="the SLA timers only").set_defaults(
        handler=cmd_serve, parts=("scheduler",)
    )
    sub.add_parser("smtpd", help="the SMTP door only").set_defaults(
        handler=cmd_serve, parts=("smtp",)
    )
    sub.add_parser(
        "worker", help="processing, consult reports and outbound delivery only"
    ).set_defaults(handler=cmd_serve, parts=("worker", "reports", "outbox"))
    sub.add_parser("reports", help="consult reports only (render, store, email)").set_defaults(
        handler=cmd_serve, parts=("reports",)
    )
    sub.add_parser("imap", help="the IMAP door only ([imap] enabled = true)").set_defaults(
        handler=cmd_serve, parts=("imap",)
    )
    sub.add_parser(
        "bus", help="the event broker only (one per installation when the parts are split)"
    ).set_defaults(handler=cmd_serve, parts=("bus",))
    users.register(sub)
    cases.register(sub)
    messages.register(sub)
    sla.register(sub)
    sample.register(sub)
    retention.register(sub)
    patients.register(sub)
    backup.register(sub)
    keys.register(sub)
    blobs.register(sub)
    dkim.register(sub)
    aud = sub.add_parser("audit", help="the audit log")
    acmds = aud.add_subparsers(dest="action", required=True)
    verify = acmds.add_parser("verify", help="check the hash chain")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(handler=cmd_audit_verify)
    return parser


def _part_names(text: str) -> tuple[str, ...]:
    from mailflow.serve import PARTS

    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in PARTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"no such part: {', '.join(unknown) or '(none given)'}; the parts are "
            f"{', '.join(PARTS)}")
    return names


def cmd_init(config: Config, args: argparse.Namespace) -> int:
    for line in initialise(config):
        print(line)
    print(f"ready: {config.storage_dir}")
    return 0


def cmd_serve(app: App, args: argparse.Namespace) -> int:
    from mailflow.bus import endpoints as bus_endpoints
    from mailflow.serve import ALL, Service, run_forever

    config = app.config
    parts: tuple[str, ...] = args.parts or ALL
    if parts == ("imap",) and not config.imap.enabled:
        print("mailflow: the IMAP door is off: set [imap] enabled = true, host, username and "
              "password (MAILFLOW_IMAP__PASSWORD)", file=sys.stderr)
        return 2
    if "reports" in parts:
        from mailflow.reports.jail import ReportError, proven_namespaces

        try:
            proven_namespaces()  # reports are rendered here: prove wkhtmltopdf is offline
        except ReportError as exc:
            print(f"mailflow: {exc}", file=sys.stderr)
            return 2

    def announce(service: Service) -> None:
        mail = config.mail
        running = [p for p in service.parts if p != "imap" or service.imap is not None]
        lines = [f"mailflow is running ({', '.join(running)})"]
        if service.smtp_address:
            host, port = service.smtp_address
            lines += [
                f"  SMTP submission: {host}:{port} (STARTTLS, then AUTH with an account's email "
                "address and password)",
                f"  send cases to:   {config.address(mail.cases_local)}",
                f"  instructions:    {config.address(mail.help_local)}",
            ]
        if service.imap is not None:
            imap = config.imap
            lines.append(f"  IMAP intake:     {service.imap.where} ({imap.security}), "
                         f"moved to {imap.processed_mailbox} once spooled")
        if "outbox" in service.parts:
            if config.outbound.relay_host:
                relay = config.outbound
                lines.append(f"  outgoing mail:   relay {relay.relay_host}:{relay.relay_port}")
            else:
                lines.append(
                    f"  outgoing mail:   written to {config.path(config.outbound.maildir_path)}/new"
                )
        if "bus" in service.parts and config.bus.enabled:
            ends = bus_endpoints(config)
            lines.append(f"  event bus:       in {ends.publish}, out {ends.subscribe}")
        if service.web_address:
            host, port = service.web_address
            lines.append(f"  admin web:       http://{host}:{port}/ (sign in as an admin)")
        lines.append("  stop with Ctrl-C")
        print("\n".join(lines), flush=True)

    run_forever(app, parts, announce)
    return 0


def cmd_audit_verify(app: App, args: argparse.Namespace) -> int:
    with app.sessions() as session:
        report = audit.verify(session)
    if args.json:
        emit_json(
            {
                "ok": report.ok,
                "events": report.events,
                "broken_at": report.broken_at,
                "problem": report.problem,
            }
        )
    elif report.ok:
        print(f"audit chain intact: {report.events} events")
    else:
        where = f"event {report.broken_at}" if report.broken_at else "the end of the chain"
        print(f"audit chain BROKEN at {where}: {report.problem}")
        print(f"({report.events} events verified before it)")
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    # No core files: a process's memory holds the master key, patients' data and remembered
    # passwords' MACs (trust/remembered.py); a core file would be a copy of it on disk.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"mailflow: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.logging.level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        if not getattr(args, "needs_app", True):
            return int(args.handler(config, args))
        app = App.open(config)
        try:
            return int(args.handler(app, args))
        finally:
            app.close()
    except (RosterError, CalendarError, PolicyError, BusError) as exc:
        print(f"mailflow: {exc}", file=sys.stderr)
        return 2
    except (CliError, AccountError, KeyError_) as exc:
        print(f"mailflow: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
