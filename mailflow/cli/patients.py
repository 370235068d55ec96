"""mailflow patients export --case CASE --out FILE.zip"""

from __future__ import annotations

import argparse
from pathlib import Path

from mailflow.app import App
from mailflow.cli.cases import CliError
from mailflow.workflow.export import ExportError, export_patient_of_case


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    patients = sub.add_parser("patients", help="patients")
    cmds = patients.add_subparsers(dest="action", required=True)
    export = cmds.add_parser(
        "export", help="everything held about the patient of a case, as a zip (a PHI read)")
    export.add_argument("--case", required=True, metavar="CASE",
                        help="a case of the patient: all of that patient's cases are included")
    export.add_argument("--out", required=True, metavar="FILE.zip")
    export.set_defaults(handler=cmd_export)


def cmd_export(app: App, args: argparse.Namespace) -> int:
    try:
        done = export_patient_of_case(app, args.case, Path(args.out), actor="cli")
    except ExportError as exc:
        raise CliError(str(exc)) from exc
    print(f"wrote {args.out}: {len(done.cases)} cases ({', '.join(done.cases)}), "
          f"{done.reports} consult reports, {done.photos} photos")
    return 0
