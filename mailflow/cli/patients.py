"""mailflow patients export --case CASE --out FILE.zip; mailflow patients merge KEEP OTHER..."""

from __future__ import annotations

import argparse
from pathlib import Path

from mailflow.app import App
from mailflow.cli.cases import CliError
from mailflow.db.session import transaction
from mailflow.workflow.export import ExportError, export_patient_of_case
from mailflow.workflow.patients import MergeError, merge, record_named


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    patients = sub.add_parser("patients", help="patients")
    cmds = patients.add_subparsers(dest="action", required=True)
    export = cmds.add_parser(
        "export", help="everything held about the patient of a case, as a zip (a PHI read)")
    export.add_argument("--case", required=True, metavar="CASE",
                        help="a case of the patient: all of that patient's cases are included")
    export.add_argument("--out", required=True, metavar="FILE.zip")
    export.set_defaults(handler=cmd_export)
    merge = cmds.add_parser(
        "merge", help="two patient records that are the same person become one (audited)",
        description="Move the cases of each OTHER patient record to KEEP and mark OTHER merged "
        "into it (kept, never deleted). Name a record by one of its cases (DERM-...) or by its "
        "number (P12). Running it again changes nothing; records of different providers are "
        "never merged.")
    merge.add_argument("keep", metavar="KEEP", help="the record to keep: a case number or P<n>")
    merge.add_argument("others", metavar="OTHER", nargs="+",
                       help="the records that are the same person: case numbers or P<n>")
    merge.set_defaults(handler=cmd_merge)


def cmd_export(app: App, args: argparse.Namespace) -> int:
    try:
        done = export_patient_of_case(app, args.case, Path(args.out), actor="cli")
    except ExportError as exc:
        raise CliError(str(exc)) from exc
    print(f"wrote {args.out}: {len(done.cases)} cases ({', '.join(done.cases)}), "
          f"{done.reports} consult reports, {done.photos} photos")
    return 0


def cmd_merge(app: App, args: argparse.Namespace) -> int:
    try:
        with transaction(app.sessions) as session:
            keep = record_named(session, args.keep)
            others = [record_named(session, ref) for ref in args.others]
            done = merge(session, keep, others, actor="cli")
    except MergeError as exc:
        raise CliError(str(exc)) from exc
    print(done.words())
    return 0
