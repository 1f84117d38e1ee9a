"""Reading a parsed mail safely: bounded walks, decoded text and headers that never raise.

In: a stdlib `email.message.Message` tree, parsed with the compat32 or the default policy
(both are handled the same way: headers are read raw and decoded here, so a header the
default policy cannot parse is still read). Out: plain strings, lists and `Part`s.

Used by the bounce and loop readers (`bounces`, `originals`, `bounce_text`, `loop_rules`).
Pure. Never raises on malformed input: an unreadable part or header reads as "" / [].
Work is bounded: at most MAX_PARTS parts, MAX_DEPTH levels, MAX_TEXT characters per text.
"""

from __future__ import annotations

import contextlib
import functools
import html
import quopri
import re
from collections.abc import Iterable
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses

from gateway.mail.mime_walk import STATUS_TYPES, payload_of, transfer_encoding, walk

MAX_TEXT = 200_000         # characters read per text part

ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
MESSAGE_ID = re.compile(r"<([^<>\s]+)>")


def repair_8bit(text: str) -> str:
    """Raw 8-bit header bytes, which compat32 keeps as surrogates, read as UTF-8."""
    with contextlib.suppress(UnicodeError):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text


def header_text(value: object) -> str:
    """A header value as readable text: RFC 2047 decoded, unfolded, raw 8-bit repaired."""
    text = repair_8bit(str(value) if value is not None else "")
    if "=?" in text:
        # an undecodable encoded-word (unknown charset, bad base64) is kept as written
        with contextlib.suppress(Exception):
            text = str(make_header(decode_header(text)))
    return " ".join(text.split())


def header_items(message: Message) -> list[tuple[str, str]]:
    """(lower-case name, decoded value) for every header, in order, without policy parsing
    (the default policy can choke on a malformed header; the raw items never do)."""
    try:
        raw = list(message.raw_items())
    except Exception:
        return []
    return [(str(name).lower(), header_text(value)) for name, value in raw]


def addresses_in(values: Iterable[str]) -> tuple[str, ...]:
    """The `local@domain` addresses in address header values, in order, without repeats."""
    result: list[str] = []
    for value in values:
        for address in _addresses_of(str(value)):
            if address not in result:
                result.append(address)
    return tuple(result)


@functools.lru_cache(maxsize=512)
def _addresses_of(value: str) -> tuple[str, ...]:
    """One header value's addresses. Cached: the loop rules read the same From, Sender and
    To values several times per mail, and `getaddresses` costs ~20-60 µs each time."""
    try:
        pairs = getaddresses([value])
    except Exception:
        pairs = [("", m) for m in ADDRESS.findall(value[:2000])]
    return tuple(a for a in (address.strip() for _, address in pairs) if "@" in a)


def message_ids_in(value: str) -> list[str]:
    """Message-IDs in a header value, as "<id>"; a bare `id@host` is accepted too."""
    found = [f"<{m}>" for m in MESSAGE_ID.findall(value) if m]
    if not found:
        bare = value.strip().strip("<>").split()
        if bare and "@" in bare[0]:
            found = [f"<{bare[0].strip('<>')}>"]
    return found


def part_text(message: Message) -> str:
    """The decoded text of a non-multipart part ("" if there is none), at most MAX_TEXT."""
    try:
        payload = message.get_payload(decode=True)
        raw = message.get_payload()
        if (isinstance(raw, str) and "\r" in raw
                and transfer_encoding(message) == "quoted-printable"):
            # soft line breaks before a bare CR (old Mac files) are not seen by the decoder
            payload = quopri.decodestring(
                normalise_newlines(raw).encode("ascii", "surrogateescape"))
    except Exception:
        payload = None
    if not isinstance(payload, bytes):
        raw = payload_of(message)
        return normalise_newlines(raw[:MAX_TEXT]) if isinstance(raw, str) else ""
    try:
        charset = message.get_content_charset() or "utf-8"
    except Exception:
        charset = "utf-8"
    payload = payload[: MAX_TEXT * 2]
    try:
        text = payload.decode(charset, "replace")
    except (LookupError, ValueError):   # unknown charset name ("UFT-8"): read it as UTF-8
        text = payload.decode("utf-8", "replace")
    return normalise_newlines(text[:MAX_TEXT])


def normalise_newlines(text: str) -> str:
    """CRLF and bare CR (old Mac mail) as LF, so line-anchored patterns see every line."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def report_texts(mime: Message | None, body_text: str) -> list[str]:
    """The mail's own words: text parts not inside a returned message (HTML, tags stripped,
    only when there is no plain text; also a multipart whose boundary is broken), or the
    caller's body text when the tree has none."""
    plain: list[str] = []
    markup: list[str] = []
    for part in walk(mime):
        if part.inside_original or part.content_type in STATUS_TYPES:
            continue
        readable = part.content_type in ("text/plain", "text/html") or part.broken_multipart
        if readable and not part.message.is_multipart():
            text = part_text(part.message)
            if part.content_type == "text/html":
                # [^<>] rather than [^>]: a run of "<" without ">" stays linear
                markup.append(html.unescape(re.sub(r"<[^<>]*>", " ", text)))
            else:
                plain.append(text)
    texts = plain or markup
    if any(t.strip() for t in texts):
        return texts
    return [normalise_newlines(body_text[:MAX_TEXT])]


# -- field blocks (RFC 3464 §2.1, RFC 5965 §3, RFC 8098 §3) --------------------------------

_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)$")


def field_blocks(part: Message) -> list[dict[str, str]]:
    """The field groups of a report part: one dict (lower-case names, first value wins) per
    block. Handles the parser's list-of-blocks form and a part left as text."""
    payload = payload_of(part)
    if isinstance(payload, list):
        blocks = []
        for block in payload:
            if isinstance(block, Message):
                fields: dict[str, str] = {}
                for name, value in header_items(block):
                    fields.setdefault(name, value)
                blocks.append(fields)
        if any(blocks):
            return [b for b in blocks if b]
        payload = "\n\n".join(part_text(b) for b in payload if isinstance(b, Message))
    text = payload if isinstance(payload, str) else part_text(part)
    return text_field_blocks(text)


def text_field_blocks(text: str) -> list[dict[str, str]]:
    """Blank-line separated `Name: value` groups found in text (continuation lines joined)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = ""
    for line in text[:MAX_TEXT].splitlines():
        stripped = line.strip()
        if not stripped:
            if current:
                blocks.append(current)
            current, last = {}, ""
            continue
        match = _FIELD.match(stripped)
        if match and not (line[:1] in (" ", "\t") and last):
            last = match.group(1).lower()
            current.setdefault(last, match.group(2).strip())
        elif last and line[:1] in (" ", "\t"):
            current[last] = f"{current[last]} {stripped}"
    if current:
        blocks.append(current)
    return blocks
