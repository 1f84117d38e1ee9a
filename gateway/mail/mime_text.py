"""Turning mail bytes into text: charsets, RFC 2047 encoded words, header values.

In: bytes with a declared (possibly wrong, unknown or missing) charset; header values with
encoded words. Out: `str`. Nothing here raises for any input: a charset that cannot decode
the bytes is replaced by the next candidate (declared, UTF-8, cp1252, Latin-1 - the last
decodes every byte), and each fallback is reported back as a defect string so the caller
can record what was repaired. HTML is `mime_html`'s.

Two kinds of reader live here. The parser's (`decode_bytes`, `header_text`) choose the
best charset and name each repair. The classifiers' (`header_items`, `part_text`, below the
line that says so) read any part of a compat32 or default-policy tree, at most MAX_TEXT
characters per text, and never raise either.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import contextlib
import quopri
import re
from email.header import decode_header, make_header
from email.message import Message

from gateway.mail.mime_walk import payload_of, transfer_encoding

# Names mail software writes that Python does not know, or knows as a narrower charset
# than the one actually used (WHATWG Encoding Standard: "iso-8859-1" means windows-1252).
_CHARSET_ALIASES = {
    "iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "iso8859-1": "cp1252",
    "us-ascii": "ascii", "ansi_x3.4-1968": "ascii",
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030",
    "ks_c_5601-1987": "cp949", "euc-kr": "cp949", "iso-8859-8-i": "iso-8859-8",
    "x-sjis": "shift_jis", "shift-jis": "shift_jis", "windows-874": "cp874",
    "utf8": "utf-8", "unicode-1-1-utf-8": "utf-8", "x-unicode20utf8": "utf-8",
}
_UNDECLARED = frozenset({"", "x-unknown", "unknown", "unknown-8bit", "x-user-defined",
                         "default", "none"})
_FALLBACKS = ("utf-8", "cp1252", "latin-1")


def charset_codec(declared: str | None) -> str | None:
    """The Python codec for a declared MIME charset, or None when unknown or not a text codec."""
    name = (declared or "").strip().strip("\"'").lower()
    name = name.split("*", 1)[0]             # RFC 2231 §5: charset*language
    if name in _UNDECLARED:
        return None
    name = _CHARSET_ALIASES.get(name, name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):          # ValueError: a NUL in the name
        return None
    # Codecs such as base64 or zlib are bytes-to-bytes; they are not charsets.
    return info.name if getattr(info, "_is_text_encoding", True) else None


def decode_bytes(data: bytes, declared: str | None) -> tuple[str, str | None]:
    """Decode `data`; returns (text, defect or None). Never raises.

    Order: the declared charset, then UTF-8, then cp1252, then Latin-1 (which always works).
    Undeclared 8-bit data (RFC 6532 allows UTF-8 in mail) takes the same path.
    """
    codec = charset_codec(declared)
    if codec is not None:
        try:
            return data.decode(codec), None
        except (ValueError, LookupError):      # UnicodeDecodeError is a ValueError
            pass
    elif data.isascii():
        return data.decode("ascii"), None
    for fallback in _FALLBACKS:
        if fallback == codec:
            continue
        try:
            text = data.decode(fallback)
        except UnicodeDecodeError:
            continue
        if declared and codec is None:
            return text, f"charset: unknown {declared!r}, decoded as {fallback}"
        if codec is not None:
            return text, f"charset: {declared!r} does not fit the data, decoded as {fallback}"
        return text, None if fallback == "utf-8" else f"charset: 8-bit data decoded as {fallback}"
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def to_bytes(text: str) -> bytes:
    """str -> bytes, raw 8-bit bytes (surrogate escapes) restored; never raises."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def decode_surrogates(value: str, hint: str | None = None) -> str:
    """compat32 keeps raw 8-bit header bytes as surrogate escapes; decode them for real."""
    if value.isascii():
        return value
    try:
        raw = value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return value                          # already real text
    return decode_bytes(raw, hint)[0]


# RFC 2047 §2: =?charset?encoding?encoded-text?=
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(r"(\?=)\s+(=\?)")


def decode_encoded_words(value: str) -> str:
    """Decode RFC 2047 encoded words anywhere in `value` (also inside quotes, as real mail
    does), joining adjacent words without the whitespace between them (RFC 2047 §6.2)."""
    if "=?" not in value:
        return value
    value = _BETWEEN_WORDS.sub(r"\1\2", value)
    return _ENCODED_WORD.sub(_decode_word, value)


def _decode_word(match: re.Match[str]) -> str:
    charset, encoding, text = match.groups()
    data = to_bytes(text)
    try:
        if encoding in "Bb":
            raw = base64.b64decode(data + b"=" * (-len(data) % 4))
        else:
            raw = binascii.a2b_qp(data.replace(b"_", b" "), header=False)
    except (binascii.Error, ValueError):
        return match.group(0)
    return decode_bytes(raw, charset)[0]


def unfold(value: str) -> str:
    """RFC 5322 §2.2.3: remove the line breaks of folding; stray ones become spaces."""
    if "\n" not in value and "\r" not in value:
        return value.strip()
    value = re.sub(r"\r?\n(?=[ \t])", "", value)
    return re.sub(r"[\r\n]+", " ", value).strip()


def header_text(value: str, hint_charset: str | None = None) -> str:
    """A header value for people: unfolded, RFC 2047 decoded, raw 8-bit decoded."""
    return decode_encoded_words(decode_surrogates(unfold(value), hint_charset))


def collapse_whitespace(value: str) -> str:
    """One line: every run of whitespace (folds included) as one space, none at the ends."""
    return " ".join(value.split())


def normalize_newlines(text: str) -> str:
    """CRLF and bare CR (old Mac mail) as LF, so line-anchored patterns see every line."""
    if "\r" not in text:
        return text
    return text.replace("\r\n", "\n").replace("\r", "\n")


# ---------------------------------------------------------------- any part of any tree
#
# The readers above serve the parser: they pick the best charset and report each repair.
# The ones below serve the readers of automatic mail (`originals`, `classify`): they read
# any part of a compat32 or default-policy tree, at most MAX_TEXT characters, and keep no
# record. They decode differently - raw 8-bit as UTF-8 with replacement characters, RFC 2047
# by the stdlib, a bogus charset as UTF-8 - and the classifiers' verdicts on real mail rest
# on that reading (9 of the corpus's 8,716 header values read differently with
# `header_text`), so the two are not merged without a decision to change those verdicts.

MAX_TEXT = 200_000         # characters read per text part


def repair_8bit(text: str) -> str:
    """Raw 8-bit header bytes, which compat32 keeps as surrogates, read as UTF-8 (unlike
    `decode_surrogates`, which tries the declared charset and fallbacks first)."""
    with contextlib.suppress(UnicodeError):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text


def _header_line(value: object) -> str:
    """A header value as one line: raw 8-bit repaired, RFC 2047 decoded by the stdlib."""
    text = repair_8bit(str(value) if value is not None else "")
    if "=?" in text:
        # an undecodable encoded-word (unknown charset, bad base64) is kept as written
        with contextlib.suppress(Exception):
            text = str(make_header(decode_header(text)))
    return collapse_whitespace(text)


def header_items(message: Message) -> list[tuple[str, str]]:
    """(lower-case name, decoded one-line value) for every header of a part, in order,
    without policy parsing (the default policy can choke on a malformed header; the raw
    items never do). [] when the headers cannot be read."""
    try:
        raw = list(message.raw_items())
    except Exception:
        return []
    return [(str(name).lower(), _header_line(value)) for name, value in raw]


def part_text(message: Message) -> str:
    """The decoded text of a non-multipart part ("" if there is none), at most MAX_TEXT
    characters, newlines normalised; an unknown charset is read as UTF-8."""
    try:
        payload = message.get_payload(decode=True)
        raw = message.get_payload()
        if (isinstance(raw, str) and "\r" in raw
                and transfer_encoding(message) == "quoted-printable"):
            # soft line breaks before a bare CR (old Mac files) are not seen by the decoder
            payload = quopri.decodestring(
                normalize_newlines(raw).encode("ascii", "surrogateescape"))
    except Exception:
        payload = None
    if not isinstance(payload, bytes):
        raw = payload_of(message)
        return normalize_newlines(raw[:MAX_TEXT]) if isinstance(raw, str) else ""
    try:
        charset = message.get_content_charset() or "utf-8"
    except Exception:
        charset = "utf-8"
    payload = payload[: MAX_TEXT * 2]
    try:
        text = payload.decode(charset, "replace")
    except (LookupError, ValueError):   # unknown charset name ("UFT-8"): read it as UTF-8
        text = payload.decode("utf-8", "replace")
    return normalize_newlines(text[:MAX_TEXT])
