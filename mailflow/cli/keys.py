"""mailflow keys rotate | status (README, "Rotating the encryption key")."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from mailflow.app import App
from mailflow.cli.cases import CliError
from mailflow.cli.output import emit_json
from mailflow.store.rotate_columns import RotationError
from mailflow.workflow.key_rotation import rotate, survey

ROTATE_HELP = """\
Add a new encryption key and re-encrypt every encrypted database value and every stored
file under it, while the service runs (it picks the new key up without a restart). Run it
again after an interruption: it carries on where things stand. When nothing is left under
the old key, the old key moves to keys/retired/: it still opens old backups; delete it once
the backups made before the rotation have expired. Only the encryption key rotates: the keys
that name stored files, find patients, and sign reply addresses and password links stay
those of the first key (a rotation would break the reply addresses already sent)."""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    keys = sub.add_parser("keys", help="the encryption keys: rotate, status")
    cmds = keys.add_subparsers(dest="action", required=True)
    rot = cmds.add_parser("rotate", help="re-encrypt everything under a new key (or resume)",
                          description=ROTATE_HELP)
    rot.set_defaults(handler=cmd_rotate)
    status = cmds.add_parser("status", help="the keys, which one is current, what is still "
                             "under an older one (reads every value and file)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_status)


def _say(line: str) -> None:
    print(line, flush=True)


def cmd_rotate(app: App, args: argparse.Namespace) -> int:
    try:
        report = rotate(app, _say)
    except RotationError as exc:
        raise CliError(str(exc)) from exc
    print(f"done: {report.values} database values and {report.files} files re-encrypted "
          f"under {report.key} ({report.passes} {'pass' if report.passes == 1 else 'passes'})")
    if report.changed_meanwhile:
        print(f"{report.changed_meanwhile} values were changed by the service meanwhile "
              "(already under the new key)")
    if report.retired:
        print(f"retired {', '.join(report.retired)} to {app.keys.folder / 'retired'}: it still "
              "opens backups made before now; delete it once they have expired")
    if report.unreadable:
        print(f"WARNING: {len(report.unreadable)} items open with no key (damaged?): "
              f"{'; '.join(report.unreadable[:20])}")
        return 1
    return 0


def cmd_status(app: App, args: argparse.Namespace) -> int:
    keys, unreadable = survey(app)
    left = sum(k.values + k.files for k in keys if k.state != "current")
    if args.json:
        emit_json({"folder": str(app.keys.folder), "keys": [asdict(k) for k in keys],
                   "left_under_older_keys": left, "unreadable": unreadable})
        return 0
    print(f"keys in {app.keys.folder}:")
    for key in keys:
        where = f"retired/{key.name}" if key.state == "retired" else key.name
        what = {"current": "current: seals everything new",
                "old": "older: still needed",
                "retired": "retired: opens backups made under it; delete it when they expire",
                }[key.state]
        print(f"  {where:<20} {what}; {key.values} database values, {key.files} files")
    if left:
        print(f"{left} values and files are still under an older key: run `mailflow keys "
              "rotate` to finish")
    else:
        print("everything is under the current key")
    if unreadable:
        print(f"WARNING: {len(unreadable)} items open with no key: {'; '.join(unreadable[:20])}")
        return 1
    return 0
