"""Coverage-guided fuzzing of one parse/ target with Atheris (libFuzzer for Python).

    python -m tests.fuzz.atheris_parse TARGET [libFuzzer options] [corpus dirs]
    e.g.  python -m tests.fuzz.atheris_parse analyze -runs=20000 -seed=1 \
              /tmp/fuzz/analyze tests/fuzz/corpus/analyze

A crash stops the run and libFuzzer writes the input to crash-<sha1> (-artifact_prefix=...):
copy it to tests/fuzz/corpus/TARGET/ so test_corpus.py replays it for good, then fix parse/.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["mailflow.parse", "tnefparse"]):
    from tests.fuzz.targets import TARGETS, run


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: atheris_parse TARGET [libFuzzer options]; TARGET is one of "
                 f"{', '.join(TARGETS)}")
    target = sys.argv.pop(1)
    atheris.Setup(sys.argv, lambda data: run(target, data))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
