"""A dermatologist's reply to a case: a consult, a question, a decline, a close or a comment
(DESIGN §1 "Dermatologist: review")."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailflow.parse.form import LABELS as FORM_LABELS
from mailflow.parse.keyvalue import KeyValues, parse_key_values
from mailflow.parse.reply import strip_quoted

KINDS = ("consult", "more_info", "decline", "close", "comment")
IN_PERSON_OPTIONS = ("not needed", "routine", "urgent within 2 weeks", "same day")
IMAGE_QUALITY_OPTIONS = ("adequate", "adequate with suggestions", "not diagnostic")


@dataclass(frozen=True)
class Answer:
    kind: str  # "consult" | "more_info" | "decline" | "close" | "comment"
    diagnosis: str = ""
    differential: str = ""
    plan: str = ""
    follow_up: str = ""
    in_person: str = ""  # normalised: one of IN_PERSON_OPTIONS or ""
    biopsy: str = ""  # as written, e.g. "no", "yes - punch biopsy of the edge"
    icd10: str = ""  # normalised codes, comma-separated, e.g. "L30.0, L40.0"
    icd10_text: str = ""  # what was written in the ICD-10 line but is no code, kept as text
    image_quality: str = ""  # one of IMAGE_QUALITY_OPTIONS or ""
    question: str = ""  # for more_info
    reason: str = ""  # for decline ("no reason given" when empty); for close, "Close: <this>"
    text: str = ""  # the whole new text (for comment/close: the message to forward)
    missing: tuple[str, ...] = ()  # for a consult attempt: required parts absent
    problems: tuple[str, ...] = ()  # people-readable problems


# Canonical key -> labels dermatologists use (compared after normalize_label: case, dots,
# hyphens and slashes do not matter, so "F/U" is "f u" and "ICD-10" is "icd 10").
LABELS: dict[str, tuple[str, ...]] = {
    "diagnosis": (
        "diagnosis", "dx", "impression", "assessment", "suspected diagnosis",
        "working diagnosis", "clinical impression", "provisional diagnosis", "diagnoses",
        "final diagnosis", "likely diagnosis", "most likely diagnosis",
    ),
    "differential": (
        "differential", "ddx", "differential diagnosis", "differentials",
        "differential diagnoses", "differential dx",
    ),
    "plan": (
        "plan", "treatment", "treatment plan", "management", "management plan",
        "recommendations", "recommendation", "rx", "therapy",
    ),
    "follow_up": ("follow up", "f u", "fu", "followup", "review", "follow up interval"),
    "in_person": (
        "in person visit", "in person", "visit", "referral", "disposition", "next step",
        "next steps", "see in person", "in person review", "face to face",
    ),
    "biopsy": ("biopsy", "bx", "tests", "investigations", "test", "work up", "workup"),
    "icd10": (
        "icd 10", "icd10", "icd", "code", "codes", "icd 10 code", "icd 10 codes", "icd code",
        "icd codes", "icd10 code", "icd10 codes", "icd 10 cm", "diagnosis code",
    ),
    "image_quality": (
        "image quality", "photo quality", "images", "photos", "picture quality",
        "photograph quality", "quality of images", "quality of photos",
    ),
    "more_info": (
        "more info", "more information", "question", "questions", "need more info",
        "need more information", "request", "more info needed", "info needed",
        "information needed", "additional information", "further information",
    ),
    "decline": ("decline", "declined", "unable to review", "cannot review", "can not review"),
    "close": ("close", "closed", "close case", "case closed"),
}  # fmt: skip
SYNONYMS = {label: key for key, labels in LABELS.items() for label in labels}
# Short values end at a blank line, so a sign-off under the last field stays out of them.
SINGLE_PARAGRAPH = frozenset({"follow_up", "in_person", "biopsy", "icd10", "image_quality"})
NAMES = {
    "diagnosis": "Diagnosis", "differential": "Differential", "plan": "Plan",
    "follow_up": "Follow-up", "in_person": "In-person visit", "biopsy": "Biopsy",
    "icd10": "ICD-10", "icd10_text": "ICD-10 as written", "image_quality": "Image quality",
    "more_info": "More info", "decline": "Decline", "close": "Close",
}  # fmt: skip
REQUIRED = ("diagnosis", "plan")
# Any of these makes the reply a consult attempt (the others alone are a comment).
CONSULT_KEYS = ("diagnosis", "plan", "differential", "in_person")
_CONSULT_FIELDS = (
    "diagnosis", "differential", "plan", "follow_up", "in_person", "biopsy", "icd10",
    "image_quality",
)  # fmt: skip

# The patient's identity lines open the case history in our notification: below the
# dermatologist's text they mean the original is still there, unquoted.
_IDENTITY = {
    label: key
    for key in ("patient_name", "date_of_birth", "sex", "mrn")
    for label in FORM_LABELS[key]
}
_QUOTE = re.compile(r"^\s*>")
# "Close" or "Decline" alone on a line is the command without the colon.
_BARE_COMMAND = re.compile(
    r"^[ \t]*[*_]{0,2}[ \t]*(?P<word>close|closed|close case|close the case|close this case"
    r"|case closed|please close(?: the case| this case)?|decline|declined)"
    r"[ \t]*[.!]?[ \t]*[*_]{0,2}[ \t]*[.!]?[ \t]*$",
    re.IGNORECASE,
)
_VALEDICTION = re.compile(
    r"^[ \t]*[*_]{0,2}(?:thanks|thank you|many thanks|thanks again|best|best regards"
    r"|kind regards|regards|warm regards|with regards|cheers|sincerely|yours sincerely"
    r"|best wishes|all the best)[ \t]*[,.!]?[ \t]*[*_]{0,2}[ \t]*$",
    re.IGNORECASE,
)
_LABEL_LINE = re.compile(r"^[ \t]*(?:[-*•][ \t]+)?[*_]{0,2}[^:：\n]{1,60}[:：]")
_PARENTHESES = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_PUNCTUATION = re.compile(r"[^\w&]+")
_ICD_TOKEN = re.compile(r"(?<![\w.])[A-Za-z]\d[\w.]*")
_ICD10 = re.compile(r"(?P<category>[A-Z]\d[0-9AB])(?:\.?(?P<sub>[0-9A-Z]{1,4}))?")
_NO_CODE = {"", "none", "n a", "na", "nil", "tbd", "deferred", "not applicable", "unknown"}

_IN_PERSON: dict[str, tuple[str, ...]] = {
    "not needed": (
        "no", "none", "not needed", "not required", "manage in primary care", "not necessary",
        "no need", "nil", "primary care", "no visit", "none needed",
    ),
    "routine": (
        "routine", "yes", "non urgent", "nonurgent", "elective", "not urgent",
        "routine referral", "routine in person",
    ),
    "urgent within 2 weeks": (
        "urgent", "urgent within 2 weeks", "within 2 weeks", "2 weeks", "soon",
        "within two weeks", "two weeks", "within 2 wks", "2 wks", "urgent in person",
    ),
    "same day": (
        "same day", "today", "emergency", "immediately", "ed", "er", "emergency department",
        "a&e", "urgent same day", "urgent today", "same day urgent",
    ),
}  # fmt: skip
_IMAGE_QUALITY: dict[str, tuple[str, ...]] = {
    "adequate": (
        "adequate", "good", "ok", "okay", "fine", "acceptable", "diagnostic", "sufficient",
        "excellent", "satisfactory",
    ),
    "adequate with suggestions": (
        "adequate with suggestions", "adequate but", "adequate with", "ok but", "okay but",
        "good but", "acceptable but", "sufficient but", "fair", "suboptimal", "sub optimal",
        "borderline", "could be better",
    ),
    "not diagnostic": (
        "not diagnostic", "non diagnostic", "nondiagnostic", "poor", "inadequate",
        "insufficient", "unusable", "not adequate", "not sufficient", "not acceptable",
        "too blurry", "blurry", "not usable",
    ),
}  # fmt: skip


def _words(value: str) -> list[str]:
    """ "Not needed (manage in primary care)." -> ["not", "needed"]."""
    value = _PARENTHESES.sub(" ", value.lower()).replace("’", "'")
    return _PUNCTUATION.sub(" ", value).replace("_", " ").split()


def _choose(value: str, table: dict[str, tuple[str, ...]]) -> str:
    """The option whose phrase the value starts with (longest phrase wins), or ""."""
    words = _words(value)
    phrases = sorted(
        ((phrase.split(), option) for option, group in table.items() for phrase in group),
        key=lambda item: -len(item[0]),
    )
    # "yes - urgent": the word after a leading "yes" says more than the "yes".
    candidates = [words[1:], words] if len(words) > 1 and words[0] == "yes" else [words]
    for candidate in candidates:
        for phrase, option in phrases:
            if candidate[: len(phrase)] == phrase:
                return option
    return ""


def _normalised(name: str, value: str, table: dict[str, tuple[str, ...]]) -> tuple[str, str]:
    """(option, problem): the option chosen, or "" and why."""
    if not value.strip():
        return "", ""
    option = _choose(value, table)
    if option:
        return option, ""
    return "", f"{name} {value.strip()!r} is not one of: {', '.join(table)}"


def _icd10(value: str) -> tuple[str, list[str], str]:
    """ "l30.0 nummular dermatitis; L40" -> ("L30.0, L40", [], ""); bad codes become problems
    and, as written, the third value (kept as text: the writer meant something by them)."""
    codes: list[str] = []
    problems: list[str] = []
    unread: list[str] = []
    for item in re.split(r"[,;\n]", value):
        tokens = _ICD_TOKEN.findall(item)
        if not tokens:
            if " ".join(_words(item)) not in _NO_CODE:
                problems.append(f"ICD-10 {item.strip()!r} is not a code (like L30.0)")
                unread.append(item.strip())
            continue
        for token in tokens:
            code = icd10_code(token)
            if code is None:
                problems.append(f"ICD-10 {token!r} is not a valid code (like L30.0 or C43.9)")
                unread.append(token)
            elif code not in codes:
                codes.append(code)
    return ", ".join(codes), problems, "; ".join(unread)


def icd10_code(token: str) -> str | None:
    """ "l30.0" -> "L30.0", "L300" -> "L30.0"; None when the token is not shaped like an
    ICD-10-CM code (a letter, a digit, a digit or A/B, then up to 4 characters after a dot)."""
    match = _ICD10.fullmatch(token.strip().rstrip(".").upper())
    if match is None:
        return None
    code = match.group("category")
    return code + "." + match.group("sub") if match.group("sub") else code


def _is_notification_start(line: str) -> bool:
    if not _LABEL_LINE.match(line):
        return False
    return bool(parse_key_values(line, _IDENTITY).values)


def _own_text(text: str) -> str:
    """The dermatologist's text: up to a quote marker or our notification's case history.

    The caller strips quotes already; this is the second line of defence for clients whose
    quoting strip_quoted does not recognise (the original pasted below, unquoted).
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    for line in lines:
        if _QUOTE.match(line) or _is_notification_start(line):
            break
        kept.append(line)
    # A leftover "On ... wrote:", an Outlook header block or a signature goes too.
    return strip_quoted("\n".join(kept)).strip()


def _structured(text: str) -> str:
    """The text for field parsing: bare "Close"/"Decline" as commands, no sign-off.

    A sign-off ("Thanks,") only ends the fields once a field has begun, so that a
    "Thanks!" above the answer does not hide it.
    """
    out: list[str] = []
    seen_field = False
    for line in text.split("\n"):
        command = _BARE_COMMAND.match(line)
        if command is not None:
            word = command.group("word").lower()
            out.append("Decline:" if word.startswith("decline") else "Close:")
            seen_field = True
            continue
        if seen_field and _VALEDICTION.match(line):
            break
        if _LABEL_LINE.match(line) and parse_key_values(line, SYNONYMS).values:
            seen_field = True
        out.append(line)
    return "\n".join(out)


def _ignored(kv: KeyValues, keys: tuple[str, ...], because: str) -> list[str]:
    return [f"{NAMES[key]} ignored because {because}" for key in keys if kv.values.get(key)]


def _consult(kv: KeyValues, text: str, problems: list[str]) -> Answer:
    values = {key: kv.values.get(key, "") for key in _CONSULT_FIELDS}
    in_person, problem = _normalised("In-person visit", values["in_person"], _IN_PERSON)
    problems += [problem] if problem else []
    quality, problem = _normalised("Image quality", values["image_quality"], _IMAGE_QUALITY)
    problems += [problem] if problem else []
    codes, code_problems, unread = _icd10(values["icd10"])
    problems += code_problems
    problems += [
        f"{NAMES[key]} was given more than once; the last one was used"
        for key in kv.repeated
        if key in _CONSULT_FIELDS
    ]
    return Answer(
        kind="consult",
        diagnosis=values["diagnosis"],
        differential=values["differential"],
        plan=values["plan"],
        follow_up=values["follow_up"],
        in_person=in_person,
        biopsy=values["biopsy"],
        icd10=codes,
        icd10_text=unread,
        image_quality=quality,
        text=text,
        missing=tuple(NAMES[key] for key in REQUIRED if not values[key]),
        problems=tuple(problems),
    )


def parse_answer(text: str) -> Answer:
    """Read a dermatologist's reply (the caller has applied strip_quoted already).

    A diagnosis makes a consult, whatever else is there; otherwise a "More info:" question,
    then "Decline:", then "Close"; then any consult field makes a consult attempt (with
    `missing`); anything else is a comment to forward.
    """
    own = _own_text(text)
    kv = parse_key_values(_structured(own), SYNONYMS, SINGLE_PARAGRAPH, unknown_labels=False)
    values = kv.values
    problems: list[str] = []
    question = values.get("more_info", "")
    if "more_info" in values and not question:
        problems.append("More info has no question, so nothing was asked")

    if values.get("diagnosis"):
        problems += _ignored(kv, ("more_info", "decline"), "a diagnosis was given")
        if "close" in values:
            problems.append("Close ignored because a diagnosis was given")
        return _consult(kv, own, problems)
    consult_fields = tuple(key for key in _CONSULT_FIELDS if key in values)
    if question:
        problems += _ignored(kv, ("decline",), "more information was requested")
        problems += _ignored(kv, consult_fields, "more information was requested")
        return Answer(kind="more_info", question=question, text=own, problems=tuple(problems))
    if "decline" in values:
        reason = values["decline"]
        if not reason:
            problems.append("Decline has no reason; please say why the case is declined")
        problems += _ignored(kv, consult_fields, "the case was declined")
        return Answer(
            kind="decline",
            reason=reason or "no reason given",
            text=own,
            problems=tuple(problems),
        )
    if "close" in values:
        return Answer(kind="close", reason=values["close"], text=own, problems=tuple(problems))
    if any(key in values for key in CONSULT_KEYS):
        return _consult(kv, own, problems)
    if not own:
        problems.append("The reply has no new text")
    return Answer(kind="comment", text=own, problems=tuple(problems))
