"""Bytes to text by a declared MIME charset, tolerant of the labels real mail uses."""

from __future__ import annotations

import codecs

# Declared label -> codecs to try strictly, in order. Mail clients often label text with a
# subset of what they really sent (gb2312 for GBK, latin-1 for windows-1252, ascii for 8-bit),
# so each label maps to the superset first.
_CHAINS: dict[str, tuple[str, ...]] = {
    "": ("utf-8", "cp1252"),
    "us-ascii": ("utf-8", "cp1252"),
    "ascii": ("utf-8", "cp1252"),
    "utf-8": ("utf-8", "cp1252"),
    "utf8": ("utf-8", "cp1252"),
    "unknown-8bit": ("utf-8", "cp1252"),
    "x-unknown": ("utf-8", "cp1252"),
    "x-user-defined": ("utf-8", "cp1252"),
    "iso-8859-1": ("cp1252", "latin-1"),
    "iso8859-1": ("cp1252", "latin-1"),
    "latin1": ("cp1252", "latin-1"),
    "latin-1": ("cp1252", "latin-1"),
    "windows-1252": ("cp1252", "latin-1"),
    "ks_c_5601-1987": ("cp949",),
    "ks_c_5601": ("cp949",),
    "ksc5601": ("cp949",),
    "euc-kr": ("cp949",),
    "gb2312": ("gb18030",),
    "gbk": ("gb18030",),
    "x-gbk": ("gb18030",),
    "gb_2312-80": ("gb18030",),
    "shift_jis": ("cp932",),
    "shift-jis": ("cp932",),
    "sjis": ("cp932",),
    "x-sjis": ("cp932",),
    "windows-31j": ("cp932",),
    "iso-2022-jp": ("iso2022_jp", "iso2022_jp_ext", "iso2022_jp_2"),
    "unicode-1-1-utf-7": ("utf-7",),
    "x-mac-roman": ("mac_roman",),
    "macintosh": ("mac_roman",),
}


def normalize_label(charset: str | None) -> str:
    """The charset label as compared: lower case, no quotes, no surrounding space."""
    if not charset:
        return ""
    return charset.strip().strip("\"'").strip().lower()


def _text_codec(name: str) -> str | None:
    """The codec's canonical name, or None if Python has no *text* codec by that name.

    Byte-to-byte codecs ("zlib", "base64") must never be reachable from a header.
    """
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


def decode_bytes(data: bytes, charset: str | None, defects: list[str]) -> str:
    """Decode `data` as `charset`; never raises. Problems are appended to `defects`."""
    label = normalize_label(charset)
    chain = _CHAINS.get(label)
    if chain is None:
        codec = _text_codec(label)
        if codec is None:
            defects.append(f"unknown charset {label[:40]!r}; read as UTF-8")
            return data.decode("utf-8", errors="replace")
        chain = (codec,)
    for codec in chain:
        try:
            return data.decode(codec)
        except (UnicodeError, LookupError):
            continue
    defects.append(f"text is not valid {label or 'us-ascii'}; unreadable bytes replaced")
    try:
        return data.decode(chain[0], errors="replace")
    except (UnicodeError, LookupError):
        return data.decode("utf-8", errors="replace")


def unescape_surrogates(text: str) -> str:
    """Undo the stdlib's surrogateescape of raw 8-bit bytes (headers sent without encoding)."""
    if not any("\ud800" <= ch <= "\udfff" for ch in text):
        return text
    try:
        raw = text.encode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        return text.encode("utf-8", errors="replace").decode("utf-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")
