"""Is this message from a machine? Answering one of those is how mail loops start."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from mailflow.parse.headers import clean_addr_spec, parse_addresses
from mailflow.parse.types import ParsedMessage

_ROBOT_LOCAL_PARTS = {
    "mailer-daemon",
    "postmaster",
    "noreply",
    "no-reply",
    "no_reply",
    "donotreply",
    "do-not-reply",
    "do_not_reply",
}
_BULK_PRECEDENCE = {"bulk", "list", "junk", "auto_reply"}
_AUTO_HEADERS = ("x-autoreply", "x-autorespond", "x-mail-autoreply")
# What auto-responders put at the start of the subject when they send no Auto-Submitted
# header (Outlook's "Automatic reply" in each language, Lotus Notes' "Auto", vacation notices).
# Written as mail clients write them; compared after NFKC and casefold. Bare words such as
# "Absence" are left out: a person may start a subject with them, and automatic mail is held
# for good, never released.
_AUTO_REPLY_SUBJECTS: dict[str, tuple[str, ...]] = {
    "en": ("out of office", "out of office autoreply", "out of the office", "automatic reply",
           "auto", "autoreply", "auto-reply", "auto reply", "auto response", "autoresponse",
           "auto-response", "automatic response", "away from the office", "vacation reply"),
    "de": ("abwesenheitsnotiz", "automatische antwort", "autom. antwort", "abwesend",
           "nicht im büro", "außer haus", "automatische abwesenheitsnotiz"),
    "fr": ("réponse automatique", "réponse automatique d'absence du bureau",
           "absence du bureau", "absent du bureau", "absent(e) du bureau"),
    "es": ("respuesta automática", "fuera de la oficina", "fuera de oficina",
           "respuesta automática de fuera de la oficina"),
    "it": ("risposta automatica", "fuori sede", "fuori ufficio"),
    "nl": ("automatisch antwoord", "afwezig", "niet aanwezig", "buiten kantoor",
           "afwezigheidsbericht"),
    "pt": ("resposta automática", "fora do escritório", "ausente do escritório",
           "resposta automática de ausência"),
    "sv": ("autosvar", "automatiskt svar", "frånvaro", "frånvarande", "ej på kontoret"),
    "da/no": ("automatisk svar", "fraværende", "ikke på kontoret",
              "ikke til stede"),
    "fi": ("automaattinen vastaus", "poissa toimistolta"),
    "pl": ("odpowiedź automatyczna", "automatyczna odpowiedź", "poza biurem"),
    "cs/sk": ("automatická odpověď", "automatická odpoveď", "mimo kancelář", "mimo kanceláriu"),
    "hu": ("automatikus válasz", "házon kívül"),
    "ro": ("răspuns automat", "în afara biroului"),
    "hr/sr/sl": ("automatski odgovor", "samodejni odgovor", "van ureda"),
    "el": ("αυτόματη απάντηση", "εκτός γραφείου"),
    "ru/uk/bg": ("автоматический ответ", "нет на месте", "вне офиса", "автоматична відповідь",
                 "автоматичен отговор"),
    "tr": ("otomatik yanıt", "otomatik cevap", "ofis dışında"),
    "ja": ("自動応答", "自動返信"),
    "zh": ("自动回复", "自動回覆", "自动答复", "自動回復"),
    "ko": ("자동 회신", "자동 응답", "부재중"),
    "he/ar": ("מענה אוטומטי", "תשובה אוטומטית", "رد تلقائي"),
    "id/vi": ("balasan otomatis", "trả lời tự động"),
}
# Bounces: their first words are distinctive enough without a separator after them.
_BOUNCE_SUBJECTS = ("undeliverable", "undelivered mail", "delivery status notification",
                    "mail delivery failed", "returned mail:", "delivery failure")


def _subject_form(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _alternatives(phrases: Iterable[str]) -> str:
    # longest first, so "auto reply" is named rather than "auto" before it
    forms = sorted({_subject_form(p) for p in phrases}, key=len, reverse=True)
    return "|".join(re.escape(form) for form in forms)


# The phrase must be the whole start of the subject ("[" allowed before it) and be followed
# by ":", "]", a dash or nothing: "Re: Out of office coverage" and "Automatic dishwasher
# rash" are a person's.
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*\[?\s*(?P<phrase>"
    + _alternatives(p for phrases in _AUTO_REPLY_SUBJECTS.values() for p in phrases)
    + r")\s*(?::|\]|\s[-\u2013\u2014]\s|$)"
)
_BOUNCE_SUBJECT = re.compile(r"^\s*(?P<phrase>" + _alternatives(_BOUNCE_SUBJECTS) + ")")
_TOKEN = re.compile(r"[a-z0-9_-]+")


def _local_part(addr: str) -> str:
    return addr.rsplit("@", 1)[0].split("+", 1)[0].lower() if addr else ""


def _is_robot(addr: str) -> bool:
    return _local_part(addr) in _ROBOT_LOCAL_PARTS


def _first_token(value: str) -> str:
    match = _TOKEN.match(value.strip().lower())
    return match.group(0) if match else ""


def automatic_reason(msg: ParsedMessage, envelope_from: str) -> str:
    """A short reason why this message is automatic, or "" for a person's message.

    `envelope_from` is the SMTP MAIL FROM (for IMAP: the Return-Path header); an empty
    one ("" or "<>") marks a bounce, so callers must not pass "" when they do not know it.
    """
    auto_submitted = _first_token(msg.auto_submitted)
    if auto_submitted and auto_submitted != "no":
        return f"it says Auto-Submitted: {auto_submitted}"
    precedence = _first_token(msg.precedence)
    if precedence in _BULK_PRECEDENCE:
        return f"it says Precedence: {precedence}"
    if msg.list_id:
        return "it comes from a mailing list (List-Id)"
    envelope = envelope_from.strip()
    if envelope in ("", "<>"):
        return "it has an empty envelope sender (a bounce)"
    if _is_robot(clean_addr_spec(envelope)) or _is_robot(envelope.strip("<>")):
        return f"it was sent by {_local_part(envelope.strip('<>'))}"
    for addr in _from_addresses(msg):
        if _is_robot(addr):
            return f"it is from {_local_part(addr)}"
    if msg.content_type in ("multipart/report", "message/delivery-status"):
        return f"it is a delivery or read report ({msg.content_type})"
    for name, _ in msg.headers:
        if name.lower().startswith(_AUTO_HEADERS):
            return f"it carries the {name} header"
    return _subject_reason(msg.subject)


def _subject_reason(subject: str) -> str:
    form = _subject_form(subject)
    match = _AUTO_REPLY_SUBJECT.match(form) or _BOUNCE_SUBJECT.match(form)
    if match:
        return f"its subject starts with {match.group('phrase')!r}"
    return ""


def _from_addresses(msg: ParsedMessage) -> list[str]:
    """From as parsed, plus a bare "MAILER-DAEMON" that has no domain to be parsed."""
    found = [msg.from_addr] if msg.from_addr else []
    for name, value in msg.headers:
        if name.lower() != "from":
            continue
        if "@" in value:
            found.extend(addr for _, addr in parse_addresses(value, []) if addr)
        else:
            found.extend(word.strip("<>\"'") for word in value.split())
    return found
