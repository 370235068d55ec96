"""`mailflow backup FILE` and `mailflow restore FILE` (README, "Backup and restore").

The passphrase comes from the first line of stdin (--passphrase-stdin), else from
$MAILFLOW_BACKUP_PASSPHRASE, else it is asked for on the terminal. Progress goes to stderr,
as a bar on a terminal and not at all otherwise (logs and cron mail stay clean).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from tqdm import tqdm

from mailflow.config import Config
from mailflow.store.backup import BackupError, Progress, count_work, write_backup
from mailflow.store.restore import restore
from mailflow.store.sealed_stream import SealedStreamError

PASSPHRASE_ENV = "MAILFLOW_BACKUP_PASSPHRASE"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = sub.add_parser(
        "backup", help="database, keys and files in one encrypted archive (while running)"
    )
    backup.add_argument("file", type=Path, help="the archive to write (must not exist)")
    _passphrase_options(backup)
    backup.set_defaults(handler=cmd_backup, needs_app=False)
    rest = sub.add_parser(
        "restore", help="a backup into an empty storage folder and an empty database"
    )
    rest.add_argument("file", type=Path, help="the archive `mailflow backup` wrote")
    _passphrase_options(rest)
    rest.set_defaults(handler=cmd_restore, needs_app=False)


def _passphrase_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--passphrase-stdin", action="store_true",
        help=f"read the passphrase from the first line of stdin (else ${PASSPHRASE_ENV}, "
             "else ask on the terminal)",
    )


def read_passphrase(args: argparse.Namespace, confirm: bool) -> str:
    if args.passphrase_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if os.environ.get(PASSPHRASE_ENV):
        return os.environ[PASSPHRASE_ENV]
    if not sys.stdin.isatty():
        raise BackupError(f"no passphrase: use --passphrase-stdin or set ${PASSPHRASE_ENV}")
    first = getpass.getpass("backup passphrase: ")
    if confirm and getpass.getpass("the same again: ") != first:
        raise BackupError("the two passphrases differ")
    return first


@contextmanager
def progress_bar(label: str, total: int, unit: str = "B") -> Iterator[Progress]:
    bar = tqdm(total=total, desc=label, unit=unit, unit_scale=unit == "B", file=sys.stderr,
               disable=not sys.stderr.isatty(), leave=False)
    try:
        yield bar.update
    finally:
        bar.close()


def cmd_backup(config: Config, args: argparse.Namespace) -> int:
    try:
        passphrase = read_passphrase(args, confirm=True)
        with progress_bar("backing up", count_work(config), unit="items") as progress:
            end = write_backup(config, args.file, passphrase, progress)
    except (BackupError, SealedStreamError, OSError, SQLAlchemyError) as exc:
        print(f"mailflow: backup failed: {exc}", file=sys.stderr)
        return 1
    rows = sum(end["rows"].values())
    size = args.file.stat().st_size
    print(f"backup written: {args.file} ({rows} rows, {end['blobs']} files, "
          f"{size / 1e6:.1f} MB, encrypted)")
    print("keep the passphrase safe: without it the backup cannot be read")
    return 0


def cmd_restore(config: Config, args: argparse.Namespace) -> int:
    try:
        passphrase = read_passphrase(args, confirm=False)
        done = restore(config, args.file, passphrase, progress_bar)
    except (BackupError, SealedStreamError, OSError, SQLAlchemyError) as exc:
        print(f"mailflow: restore refused: {exc}; nothing was restored", file=sys.stderr)
        return 1
    rows = sum(done["rows"].values())
    print(f"restored: {rows} rows and {done['blobs']} files from the backup of "
          f"{done['created_at']} (schema {done['schema_revision']}) into {config.storage_dir}")
    print("start it with `mailflow serve`")
    return 0
