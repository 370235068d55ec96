"""Run mailflow's benchmarks: `python -m benchmarks [NAME ...] [--quick]` (`make bench`).

A benchmark is a module (report.py, ...) or package (intake/) of this package with a
`run(quick: bool)` function; helper modules have none. Benchmarks measure and report; they never
fail a build. Each prints its figures beside a baseline measured in the same run and marks a missed
target MISSED; the exit status is 0 unless a benchmark could not run at all.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIRST = ("intake",)


def available() -> list[str]:
    """Modules and packages (intake/) defining a top-level `run` function (found without
    importing them)."""
    found = []
    sources = {p.stem: p for p in HERE.glob("*.py")}
    sources |= {p.parent.name: p for p in HERE.glob("*/__init__.py")}
    for name, path in sorted(sources.items()):
        if name.startswith("_"):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError):
            found.append(name)  # let the import report the problem
            continue
        if any(isinstance(n, ast.FunctionDef) and n.name == "run" for n in tree.body):
            found.append(name)
    return sorted(found, key=lambda n: (n not in FIRST, FIRST.index(n) if n in FIRST else 0, n))


def main(argv: list[str] | None = None) -> int:
    names_known = available()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"one of: {', '.join(names_known)} (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="few iterations, for a smoke run")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in names_known]
    if unknown:
        parser.error(
            f"no benchmark named {', '.join(unknown)}; there are: {', '.join(names_known)}"
        )
    failed = []
    for name in args.names or names_known:
        started = time.monotonic()
        print(f"\n##### benchmark {name}{' (quick)' if args.quick else ''}", flush=True)
        try:
            importlib.import_module(f"benchmarks.{name}").run(args.quick)
        except Exception:
            traceback.print_exc()
            print(f"benchmark {name}: could not run (see above)", flush=True)
            failed.append(name)
        print(f"##### {name}: {time.monotonic() - started:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
