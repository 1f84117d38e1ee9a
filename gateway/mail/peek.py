"""A quick look at a raw mail's From and Subject, without the parser: for the operator's
lists of mail the pipeline could not process (quarantined, or failing and retried), so
each entry says which mail it is even when the parser refused it or crashed on it.

In: the raw bytes (only the header block, at most `HEAD_BYTES`, is read). Out: (from,
subject) as text, "" where a header is missing: the From's one address when it names
exactly one unambiguously (`addresses.parse_address_list`), else its decoded text cut to
`FROM_CHARS` (it credits nobody: it is only shown); the Subject decoded (RFC 2047, raw 8-bit
as UTF-8 or cp1252) on one line. Linear, no recursion, never raises.
"""

from __future__ import annotations

import re

from gateway.mail.addresses import parse_address_list
from gateway.mail.mime_text import (
    collapse_whitespace,
    decode_bytes,
    decode_encoded_words,
    unfold,
)

HEAD_BYTES = 64 * 1024
FROM_CHARS = 200
SUBJECT_CHARS = 1000
_VALUE_CHARS = 8000        # of a header value, before decoding
# a header field at a line start, with its continuation lines (RFC 5322 §2.2.3)
_FIELD = re.compile(rb"^(from|subject)[ \t]*:([^\n]*(?:\n[ \t][^\n]*)*)",
                    re.IGNORECASE | re.MULTILINE)
_END_OF_HEADER = re.compile(rb"\n\r?\n")


def peek_from_subject(raw: bytes) -> tuple[str, str]:
    """(From, Subject) of a raw mail, for display only (see the module's docstring)."""
    try:
        return _peek(raw)
    except Exception:      # a display helper: whatever the bytes, the caller gets an answer
        return "", ""


def _peek(raw: bytes) -> tuple[str, str]:
    head = raw[:HEAD_BYTES].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    end = _END_OF_HEADER.search(head)
    if end is not None:
        head = head[:end.start() + 1]
    found: dict[str, str] = {}
    for match in _FIELD.finditer(head):
        name = match.group(1).lower().decode("ascii")
        if name not in found:
            found[name] = unfold(decode_bytes(match.group(2)[:_VALUE_CHARS], None)[0])
    subject = _readable(found.get("subject", ""))[:SUBJECT_CHARS]
    value = found.get("from", "")
    mailbox = parse_address_list(value).single()
    return (mailbox.address if mailbox else _readable(value)[:FROM_CHARS]), subject


def _readable(value: str) -> str:
    return collapse_whitespace(decode_encoded_words(value))
