"""`make fuzz`: every parse/ target under Atheris for --runs inputs each, one process per
target, printing what ran and where any crash was written.

Each target starts from its committed corpus (tests/fuzz/corpus/TARGET) and grows a working
copy under --work; the committed corpus is only read. A crash leaves crash-<sha1> in
WORK/crashes/TARGET/: copy it into tests/fuzz/corpus/TARGET/ with a name that says what it is,
and fix parse/ until test_corpus.py passes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from tests.fuzz.targets import TARGETS

CORPUS = Path(__file__).parent / "corpus"


def fuzz_one(target: str, runs: int, seed: int, work: Path, max_len: int) -> bool:
    grown = work / "corpus" / target
    crashes = work / "crashes" / target
    grown.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "tests.fuzz.atheris_parse", target, f"-runs={runs}",
               f"-seed={seed}", f"-max_len={max_len}", f"-artifact_prefix={crashes}/",
               "-print_final_stats=1", str(grown), str(CORPUS / target)]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, errors="replace")
    seconds = time.monotonic() - started
    stats = [line for line in done.stderr.splitlines()
             if line.startswith(("stat::number_of_executed_units", "#", "==")) and (
                 "DONE" in line or "stat::" in line or "ERROR" in line)]
    found = sorted(crashes.iterdir())
    size = len(list(grown.iterdir()))
    print(f"{target:8} exit {done.returncode}  {seconds:6.1f} s  corpus {size} files  "
          f"crashes {len(found)}  {' | '.join(stats[-2:])}", flush=True)
    if done.returncode != 0:
        print(done.stderr[-3000:], flush=True)
    for crash in found:
        print(f"    crash input: {crash}", flush=True)
    return done.returncode == 0 and not found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20_000, help="inputs per target")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--max-len", type=int, default=8192, help="longest input, in bytes")
    parser.add_argument("--work", type=Path, default=Path("build/fuzz"))
    parser.add_argument("targets", nargs="*", default=list(TARGETS))
    args = parser.parse_args()
    print(f"atheris: {args.runs} runs per target, seed {args.seed}, max_len {args.max_len}, "
          f"work {args.work}", flush=True)
    results = [fuzz_one(t, args.runs, args.seed, args.work, args.max_len) for t in args.targets]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
