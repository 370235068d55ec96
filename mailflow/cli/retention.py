"""mailflow retention run [--dry-run]"""

from __future__ import annotations

import argparse
from dataclasses import asdict

from mailflow.app import App
from mailflow.cli.output import emit_json
from mailflow.workflow import retention


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ret = sub.add_parser("retention", help="delete raw messages and photos past their retention")
    cmds = ret.add_subparsers(dest="action", required=True)
    run = cmds.add_parser("run", help="purge now (the scheduler does this daily)")
    run.add_argument("--dry-run", action="store_true",
                     help="only print what would be purged; nothing changes")
    run.add_argument("--json", action="store_true")
    run.set_defaults(handler=cmd_run)


def cmd_run(app: App, args: argparse.Namespace) -> int:
    report = retention.run(app, dry_run=args.dry_run)
    if args.json:
        emit_json({"dry_run": report.dry_run, "cases": [asdict(c) for c in report.cases],
                   "caseless_messages": report.caseless_messages,
                   "files_deleted": report.files_deleted, "files_kept": report.files_kept,
                   "orphans": report.orphans})
        return 0
    config = app.config.retention
    verb = "would purge" if report.dry_run else "purged"
    print(f"retention: raw messages {config.raw_message_years:g} years, photos "
          f"{config.photo_years:g} years after the case closed (or the message arrived)")
    for case in report.cases:
        print(f"  {case.number}: {verb} {case.raw_messages} received and {case.sent_messages} "
              f"sent emails, {case.photos} photos")
    if report.caseless_messages:
        print(f"  {verb} {report.caseless_messages} emails on no case")
    files = "would delete" if report.dry_run else "deleted"
    print(f"{files} {report.files_deleted} stored files; {report.files_kept} kept because a "
          "newer message or photo still uses them")
    print(f"{files} {report.orphans} stored files no email, photo or report uses (left by a "
          "process stopped while storing them)")
    if report.empty:
        print("nothing is past its retention")
    return 0
