"""mailflow blobs status | migrate --to database|files (README, "Blobs in the database")."""

from __future__ import annotations

import argparse

from mailflow.app import App, open_blobs
from mailflow.cli.cases import CliError
from mailflow.cli.output import emit_json
from mailflow.store.blob_migrate import migrate
from mailflow.store.blobs import Blobs

MIGRATE_HELP = """\
Copy every stored file (raw messages, photos, reports) to the database or back to files,
as stored (still encrypted), checking each copy. Run it again after an interruption: it
skips what is already copied and checked. It switches nothing: when it has finished, set
[storage] blobs in config.toml and restart. With --remove-source, each original is deleted
once its copy is checked (do this only after switching, with the service stopped)."""

PLACES = ("files", "database")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    blobs = sub.add_parser("blobs", help="stored files: status, migrate between files and "
                           "the database")
    cmds = blobs.add_subparsers(dest="action", required=True)
    status = cmds.add_parser("status", help="how many stored files are in each place")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_status)
    mig = cmds.add_parser("migrate", help="copy every stored file to the other place, checked",
                          description=MIGRATE_HELP)
    mig.add_argument("--to", required=True, choices=PLACES)
    mig.add_argument("--remove-source", action="store_true",
                     help="delete each original once its copy is checked")
    mig.add_argument("--limit", type=int, default=None, help=argparse.SUPPRESS)  # tests
    mig.set_defaults(handler=cmd_migrate)


def _store(app: App, where: str) -> Blobs:
    return open_blobs(app.config, app.engine, app.keys.sealing, app.keys.blob_name_key, where)


def cmd_status(app: App, args: argparse.Namespace) -> int:
    counts = {where: sum(1 for _ in _store(app, where).files()) for where in PLACES}
    if args.json:
        emit_json({"in_use": app.config.storage.blobs, **counts})
        return 0
    print(f"files:    {counts['files']} in {app.config.storage_dir / 'blobs'}")
    print(f"database: {counts['database']}")
    print(f"in use ([storage] blobs): {app.config.storage.blobs}")
    return 0


def _say(line: str) -> None:
    print(line, flush=True)


def cmd_migrate(app: App, args: argparse.Namespace) -> int:
    source = "database" if args.to == "files" else "files"
    if args.remove_source and app.config.storage.blobs != args.to:
        # the service still reads (and writes) the source: deleting it would lose messages
        raise CliError(f'--remove-source deletes what mailflow reads now: first set [storage] '
                       f'blobs = "{args.to}" in config.toml and restart every part, then '
                       f'run it again')
    report = migrate(_store(app, source), _store(app, args.to), app.keys.sealing,
                     app.keys.blob_name_key, _say, args.remove_source, args.limit)
    print(f"{report.copied} copied, {report.skipped} already there and checked"
          + (f", {report.removed} removed from the {source}" if args.remove_source else ""))
    if report.damaged:
        print(f"WARNING: {len(report.damaged)} failed their check and were not copied "
              f"(damaged?): {'; '.join(report.damaged[:20])}")
        return 1
    if report.stopped_early:
        print("stopped before the end: run the same command again to carry on")
        return 0
    if app.config.storage.blobs != args.to:
        print(f'every stored file is now also in the {args.to}: set [storage] blobs = '
              f'"{args.to}" in config.toml and restart mailflow')
    return 0
