"""Which required view each case photo is (DESIGN §1): by keywords, else by attachment order."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

DISTRIBUTION = "distribution"
CLOSE_UP = "close-up (anterior/posterior)"
OBLIQUE = "close-up (oblique/lateral)"
ADDITIONAL = "additional"
REQUIRED_VIEWS: tuple[str, ...] = (DISTRIBUTION, CLOSE_UP, OBLIQUE)

# "Strong" words name the kind of shot; "weak" ones are also body sites ("back", "side of the
# neck"), so they count only when no strong word is present.
_DISTRIBUTION_WORDS = frozenset({"distribution", "overview", "wide", "whole", "full", "overall"})
_CLOSE_WORDS = frozenset({"close", "closeup", "macro", "zoom", "zoomed", "detail"})
_OBLIQUE_WORDS = frozenset({"oblique", "lateral", "angle", "angled", "tangential"})
_WEAK_CLOSE_WORDS = frozenset({"front", "anterior", "back", "posterior", "ap"})
_WEAK_OBLIQUE_WORDS = frozenset({"side", "profile"})
_ADDITIONAL_WORDS = frozenset({"additional", "extra"})
_DERMOSCOPY_PREFIXES = ("dermoscop", "dermatoscop")  # dermoscopy, dermatoscopic, ...

_CHUNKS = re.compile(r"[^\W_]+")  # split on _ - . spaces and other punctuation


def assign_views(photos: Sequence[tuple[str, str]], taken: Iterable[str] = ()) -> list[str]:
    """One view per (filename, caption), in order. A caption's keywords outrank the filename's.

    The first photo naming a required view takes it (a later one becomes additional); photos
    naming nothing fill the still-missing required views in DESIGN order, then are additional.
    `taken` are views the case already has (photos added by a later reply fill the rest).
    """
    named = [_named_view(caption) or _named_view(filename) for filename, caption in photos]
    views: list[str | None] = [None] * len(photos)
    taken = set(taken)
    for i, view in enumerate(named):
        if view is None:
            continue
        if view in REQUIRED_VIEWS and view not in taken:
            taken.add(view)
            views[i] = view
        else:
            views[i] = ADDITIONAL
    missing = iter(v for v in REQUIRED_VIEWS if v not in taken)
    return [view if view is not None else next(missing, ADDITIONAL) for view in views]


def missing_views(views: Iterable[str]) -> list[str]:
    """The required views (in DESIGN order) that no photo has."""
    present = set(views)
    return [view for view in REQUIRED_VIEWS if view not in present]


def _named_view(text: str) -> str | None:
    """The view a text's keywords name, or None when it names none."""
    words = set(_words(text))
    if not words:
        return None
    close = bool(words & _CLOSE_WORDS) or any(w.startswith(_DERMOSCOPY_PREFIXES) for w in words)
    oblique = bool(words & _OBLIQUE_WORDS)
    if close:
        return OBLIQUE if oblique else CLOSE_UP  # "oblique close-up" is the third view
    if words & _DISTRIBUTION_WORDS:
        return DISTRIBUTION  # "wide angle", "full back": the shot kind beats the body site
    if oblique or words & _WEAK_OBLIQUE_WORDS:
        return OBLIQUE
    if words & _WEAK_CLOSE_WORDS:
        return CLOSE_UP
    if words & _ADDITIONAL_WORDS:
        return ADDITIONAL
    return None


def _words(text: str) -> list[str]:
    """Lower-case words: split on punctuation, camelCase and letter/digit boundaries.

    A plural "s" is dropped when what remains is a keyword ("sides", "closeups").
    """
    words: list[str] = []
    for chunk in _CHUNKS.findall(text):
        for word in _split_camel(chunk):
            word = word.lower()
            if word.endswith("s") and _is_keyword(word[:-1]):
                word = word[:-1]
            words.append(word)
    return words


def _split_camel(chunk: str) -> list[str]:
    """Split "IMGCloseUp2" into ["IMG", "Close", "Up", "2"]."""
    parts: list[str] = []
    start = 0
    for i in range(1, len(chunk)):
        prev, cur = chunk[i - 1], chunk[i]
        nxt = chunk[i + 1] if i + 1 < len(chunk) else ""
        if (
            prev.isdigit() != cur.isdigit()  # letters <-> digits
            or (prev.islower() and cur.isupper())  # closeUp
            or (prev.isupper() and cur.isupper() and nxt.islower())  # IMGClose
        ):
            parts.append(chunk[start:i])
            start = i
    parts.append(chunk[start:])
    return parts


_ALL_KEYWORDS = (
    _DISTRIBUTION_WORDS
    | _CLOSE_WORDS
    | _OBLIQUE_WORDS
    | _WEAK_CLOSE_WORDS
    | _WEAK_OBLIQUE_WORDS
    | _ADDITIONAL_WORDS
)


def _is_keyword(word: str) -> bool:
    return word in _ALL_KEYWORDS or word.startswith(_DERMOSCOPY_PREFIXES)


# How a provider reads each view: plain words, no "distribution" or "anterior/posterior".
PLAIN_VIEWS: dict[str, str] = {
    DISTRIBUTION: "a photo of the whole area",
    CLOSE_UP: "a close-up from the front",
    OBLIQUE: "a close-up from an angle",
    ADDITIONAL: "an extra photo",
}


def plain_view(view: str) -> str:
    return PLAIN_VIEWS.get(view, view)
