"""mailflow messages list|reprocess|release|attach · mailflow outbox list|retry"""

from __future__ import annotations

import argparse

from sqlalchemy import select

from mailflow.app import App
from mailflow.cli.cases import CliError
from mailflow.cli.output import emit
from mailflow.db.models import InboundMessage, MessageStatus, OutboundMessage, OutboxStatus
from mailflow.db.session import transaction
from mailflow.outbound.delivery import retry_now


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    messages = sub.add_parser("messages", help="inbound messages and the quarantine")
    cmds = messages.add_subparsers(dest="action", required=True)
    lst = cmds.add_parser("list", help="list inbound messages")
    lst.add_argument("--status", choices=MessageStatus.ALL)
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=cmd_list)
    again = cmds.add_parser("reprocess", help="process a message again (e.g. from quarantine)")
    again.add_argument("id", type=int, metavar="ID")
    again.set_defaults(handler=cmd_reprocess)
    release = cmds.add_parser(
        "release", help="process a held message as if its sender were verified (audited)")
    release.add_argument("id", type=int, metavar="ID")
    release.set_defaults(handler=cmd_release)
    attach = cmds.add_parser(
        "attach", help="add a held message to a case, as a message from its sender (audited)")
    attach.add_argument("id", type=int, metavar="ID")
    attach.add_argument("--case", required=True, metavar="CASE")
    attach.set_defaults(handler=cmd_attach)

    outbox = sub.add_parser("outbox", help="outgoing email")
    ocmds = outbox.add_subparsers(dest="action", required=True)
    olst = ocmds.add_parser("list", help="list outgoing email")
    olst.add_argument("--status", choices=OutboxStatus.ALL)
    olst.add_argument("--json", action="store_true")
    olst.set_defaults(handler=cmd_outbox_list)
    retry = ocmds.add_parser("retry", help="try to deliver again now")
    retry.add_argument("id", type=int, metavar="ID")
    retry.set_defaults(handler=cmd_outbox_retry)


def cmd_list(app: App, args: argparse.Namespace) -> int:
    with app.sessions() as session:
        query = select(InboundMessage).order_by(InboundMessage.id)
        if args.status:
            query = query.where(InboundMessage.status == args.status)
        rows = [
            {
                "id": m.id,
                "received_at": m.received_at,
                "source": m.source,
                "from": m.mail_from,
                "to": ", ".join(m.rcpt_to),
                "size": m.size,
                "status": m.status,
                "route": m.route,
                "reason_code": m.reason_code,
                "outcome": m.outcome,
                "attempts": m.attempts,
                "last_error": m.last_error,
                "auth_results": m.auth_results,  # MX mode: mailflow's own DKIM/SPF/DMARC
                "case_id": m.case_id,
                "duplicate_of": m.duplicate_of_id,
            }
            for m in session.execute(query).scalars()
        ]
    emit(rows, args.json, ["id", "received_at", "from", "status", "outcome"], "no messages")
    return 0


def cmd_reprocess(app: App, args: argparse.Namespace) -> int:
    from mailflow.workflow.quarantine import QuarantineError, reprocess

    with transaction(app.sessions) as session:
        try:
            was = reprocess(session, args.id, actor="cli")
        except QuarantineError as exc:
            raise CliError(str(exc)) from exc
    print(f"message {args.id} queued for processing again (was {was})")
    return 0


def cmd_outbox_list(app: App, args: argparse.Namespace) -> int:
    with app.sessions() as session:
        query = select(OutboundMessage).order_by(OutboundMessage.id)
        if args.status:
            query = query.where(OutboundMessage.status == args.status)
        rows = [
            {
                "id": o.id,
                "created_at": o.created_at,
                "kind": o.kind,
                "to": o.to_addr,
                "status": o.status,
                "attempts": o.attempts,
                "next_attempt_at": o.next_attempt_at,
                "last_error": o.last_error,
                "sent_at": o.sent_at,
                "message_id": o.message_id,
                "case_id": o.case_id,
            }
            for o in session.execute(query).scalars()
        ]
    emit(
        rows,
        args.json,
        ["id", "created_at", "kind", "to", "status", "attempts", "last_error"],
        "no outgoing email",
    )
    return 0


def cmd_outbox_retry(app: App, args: argparse.Namespace) -> int:
    with transaction(app.sessions) as session:
        try:
            retry_now(session, args.id)
        except (LookupError, ValueError) as exc:
            raise CliError(str(exc)) from exc
    print(f"outbound message {args.id} will be delivered at the next attempt")
    return 0


def cmd_release(app: App, args: argparse.Namespace) -> int:
    from mailflow.workflow.quarantine import QuarantineError, release

    with transaction(app.sessions) as session:
        try:
            release(session, args.id, actor="cli")
        except QuarantineError as exc:
            raise CliError(str(exc)) from exc
    print(f"message {args.id} released: it will be processed as if its sender were verified")
    return 0


def cmd_attach(app: App, args: argparse.Namespace) -> int:
    from mailflow.workflow.quarantine import QuarantineError, attach

    with transaction(app.sessions) as session:
        try:
            case = attach(session, args.id, args.case, actor="cli")
        except QuarantineError as exc:
            raise CliError(str(exc)) from exc
        number = case.number
    print(f"message {args.id} will be added to {number} as a message from its sender")
    return 0
