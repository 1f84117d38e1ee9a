"""What reports and automatic mail say: addresses, Message-IDs, own words, field blocks.

In: header values and a stdlib `email.message.Message` tree (compat32 or default policy),
walked with `mime_walk` and read with `mime_text`'s lenient readers. Out: plain strings,
tuples and dicts.

Used by the bounce and loop readers (`bounces`, `originals`, `bounce_text`, `loop_rules`).
Pure. Never raises on malformed input: an unreadable part or header reads as "" / [].
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Iterable
from email.message import Message
from email.utils import getaddresses

from gateway.mail.mime_text import MAX_TEXT, header_items, normalize_newlines, part_text
from gateway.mail.mime_walk import STATUS_TYPES, payload_of, walk

ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
MESSAGE_ID = re.compile(r"<([^<>\s]+)>")


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
    return [normalize_newlines(body_text[:MAX_TEXT])]


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
