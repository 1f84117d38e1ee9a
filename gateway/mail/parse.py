"""parse_message: the raw bytes of one received mail -> `ParsedMessage`. Pure: no I/O.

In: the raw bytes exactly as received (an mbox "From " first line, CRLF or bare-CR line
endings and broken header blocks are all accepted) and the time the mail was received.
Out: a `ParsedMessage` (see gateway/mail/message.py): decoded headers, addresses, Message-IDs,
date, body text with the offset where quoted history starts, sanitized HTML, attachments,
signed/encrypted flags, the repairs made (`defects`) and the stdlib `Message` tree (`mime`)
for the bounce classifier.

Guarantees on failure: a mail that breaks a `ParseLimits` limit raises `ParseLimitExceeded`
with the reason ("nesting depth 21 > 20"), checked before the standard library's recursive
parser runs; every other input gives a result - missing or bogus Message-ID and Date are
replaced (a Message-ID derived from SHA-256 of the raw bytes; the received time), undecodable
text is decoded in a fallback charset, and each repair is listed in `defects`.

Performance: one parse with `policy=compat32` (about 13x cheaper than the default policy,
see docs/contributing/performance.md); headers and bodies are decoded once, here.
"""

from __future__ import annotations

import email
import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email import policy as email_policy
from email.message import Message
from email.utils import parsedate_to_datetime
from types import MappingProxyType

from gateway.mail.addresses import parse_address_list
from gateway.mail.message import MailAddress, ParsedMessage, ParseLimitExceeded, RawSpan
from gateway.mail.mime_body import extract_body
from gateway.mail.mime_outline import MimeOutline, ParseLimits, outline_mime, repair_header_block
from gateway.mail.mime_stream import STREAMED_ENCODINGS
from gateway.mail.mime_text import collapse_whitespace, decode_surrogates, header_text, unfold
from gateway.mail.mime_walk import content_type, transfer_encoding, walk
from gateway.mail.quotes import find_quote_start

__all__ = ["ParseLimitExceeded", "ParseLimits", "parse_message"]

GENERATED_ID_DOMAIN = "generated.ticketgw.invalid"   # .invalid: RFC 2606 §2, never routable
_ANGLE_ID = re.compile(r"<([^<>]*)>")
_NOT_BLANK = re.compile(rb"\S")
_DEFAULT_LIMITS = ParseLimits()
MAX_NAME_CHARS = 256


def parse_message(raw: bytes, *, received: datetime,
                  limits: ParseLimits | None = None) -> ParsedMessage:
    """Understand one mail; `ParseLimitExceeded` when it breaks a limit (see module doc)."""
    limits = limits or _DEFAULT_LIMITS
    source, defects = repair_header_block(raw, limits)
    defects.extend(_format_defects(raw))
    outline = outline_mime(source, limits)
    tree, streamed = _parse_with_large_bodies_left_out(source, outline, limits, defects)
    message_parts, parser_defects = _check_tree(tree, limits)
    defects.extend(parser_defects)
    raw_bodies = _raw_message_bodies(source, outline, message_parts, defects, limits)
    hint = tree.get_content_charset()
    headers = _decoded_headers(tree, hint)
    body = extract_body(tree, raw_bodies, streamed)
    defects.extend(body.defects)
    message_id, generated = _message_id(tree, raw)
    date, date_from_header = _date(tree, received)
    body_text = "\n\n".join(t for t in (body.text, body.forwarded_text) if t)
    from_ = _single_address(tree, "From", hint, defects)
    sender = _single_address(tree, "Sender", hint, defects)
    reply_to = _single_address(tree, "Reply-To", hint, defects)
    return ParsedMessage(
        message_id=message_id,
        message_id_generated=generated,
        subject=collapse_whitespace(headers.get("subject", "")),
        from_=from_,
        sender=sender,
        reply_to=(reply_to,) if reply_to else (),
        to=_addresses(tree, "to", hint, limits),
        cc=_addresses(tree, "cc", hint, limits),
        date=date,
        date_from_header=date_from_header,
        in_reply_to=_message_ids(tree, "in-reply-to"),
        references=_message_ids(tree, "references"),
        headers=MappingProxyType(headers),
        body_text=body_text,
        body_html=body.html,
        remote_images=body.remote_images,
        quote_start=find_quote_start(body.text),
        attachments=tuple(body.attachments),
        content_type=tree.get_content_type(),
        signed=body.signed,
        encrypted=body.encrypted,
        defects=tuple(dict.fromkeys(defects)),
        mime=tree,
    )


# ---------------------------------------------------------------- the tree


_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def _format_defects(raw: bytes) -> list[str]:
    """Files that are not RFC 5322 mail at all, named so routing can reject them clearly."""
    if raw.startswith(_OLE2_MAGIC):
        return ["format: an Outlook .msg (OLE2) file, not an RFC 5322 message"]
    if _NOT_BLANK.search(raw) is None:        # (raw.strip() would copy a large mail)
        return ["format: empty message"]
    return []


def _parse_with_large_bodies_left_out(source: bytes, outline: MimeOutline,
                                      limits: ParseLimits, defects: list[str]
                                      ) -> tuple[Message, Mapping[int, RawSpan]]:
    """The stdlib tree, and the parts whose bodies stayed in `source` (by id of the part).

    The stdlib holds a body several times while parsing and decoding it (a 25 MiB
    attachment cost the worker 300 MiB) and reads it line by line, so bodies larger than
    `streamed_body_bytes` (attachments: `streamed_attachment_bytes`) are cut out of the copy
    it parses and decoded piece by piece when stored. Only when the pre-scan saw exactly
    the stdlib's leaves (types and encodings, in order): otherwise the whole mail is parsed
    as it is."""
    large = [leaf for leaf in outline.leaf_spans
             if leaf.end - leaf.start > _streamed_from(leaf.content_type, limits)
             and leaf.encoding in STREAMED_ENCODINGS]
    if not large:
        return _parse_tree(source), {}
    pieces, position = [], 0
    for leaf in large:
        pieces.append(source[position:leaf.start])
        position = leaf.end
    pieces.append(source[position:])
    tree = _parse_tree(b"".join(pieces))
    leaves = [part.message for part in walk(tree, max_parts=None, max_depth=None,
                                            into_status=True)
              if not part.message.is_multipart()]
    if [(content_type(p), transfer_encoding(p)) for p in leaves] != [
            (leaf.content_type, leaf.encoding) for leaf in outline.leaf_spans]:
        defects.append("mime: structure differs from the pre-scan; large parts in memory")
        return _parse_tree(source), {}
    spans = dict(zip(map(id, outline.leaf_spans), leaves, strict=True))
    return tree, {id(spans[id(leaf)]): RawSpan(source, leaf.start, leaf.end, leaf.encoding)
                  for leaf in large}


def _streamed_from(content_type: str, limits: ParseLimits) -> int:
    """The body size above which a leaf of this type is left out of the stdlib's parse:
    `streamed_attachment_bytes` for attachments, `streamed_body_bytes` for text and
    message/* parts (which the classifiers read from the tree)."""
    if content_type.startswith(("text/", "message/")):
        return limits.streamed_body_bytes
    return min(limits.streamed_body_bytes, limits.streamed_attachment_bytes)


def _parse_tree(source: bytes) -> Message:
    try:
        return email.message_from_bytes(source, policy=email_policy.compat32)
    except RecursionError as exc:   # the pre-scan should make this unreachable
        raise ParseLimitExceeded("MIME structure nested too deeply for the parser") from exc


def _check_tree(tree: Message, limits: ParseLimits) -> tuple[list[Message], list[str]]:
    """Count the real tree (the pre-scan is a model of the parser, this is the parser's
    result); collect the message/* parts in document order and the parser's defects.

    The walk stops one part past either limit, at the first part that breaks one: every
    part before it in document order has been seen, so the reason is the same as if the
    whole tree had been counted."""
    message_parts: list[Message] = []
    defects: list[str] = []
    parts = walk(tree, max_parts=limits.max_parts + 1, max_depth=limits.max_depth,
                 into_status=True)
    for count, part in enumerate(parts, start=1):
        if part.depth + 1 > limits.max_depth:
            raise ParseLimitExceeded(f"nesting depth {part.depth + 1} > {limits.max_depth}")
        if count > limits.max_parts:
            raise ParseLimitExceeded(f"MIME parts {count} > {limits.max_parts}")
        defects.extend(f"mime: {type(d).__name__}" for d in part.message.defects)
        if part.content_type.startswith("message/"):
            message_parts.append(part.message)
    return message_parts, defects


def _raw_message_bodies(source: bytes, outline: MimeOutline, message_parts: list[Message],
                        defects: list[str], limits: ParseLimits
                        ) -> Mapping[int, bytes | RawSpan]:
    """The exact bytes of each message/* body, when the pre-scan saw the same structure
    (large ones as spans of `source`, not copied)."""
    spans = outline.message_spans
    if [s.content_type for s in spans] != [p.get_content_type() for p in message_parts]:
        defects.append("mime: structure differs from the pre-scan; message parts re-serialised")
        return {}
    return {id(part): RawSpan(source, span.start, span.end, "")
            if span.end - span.start > limits.streamed_body_bytes
            else source[span.start:span.end]
            for part, span in zip(message_parts, spans, strict=True)}


# ---------------------------------------------------------------- headers


def _decoded_headers(tree: Message, hint: str | None) -> dict[str, str]:
    """Lower-cased name -> decoded, unfolded value of its first occurrence."""
    headers: dict[str, str] = {}
    for name, value in tree.raw_items():
        key = name.strip().lower()
        if key not in headers:
            headers[key] = _header_value(str(value), hint)
    return headers


def _header_value(value: str, hint: str | None) -> str:
    if value.isascii() and "=?" not in value and "\n" not in value:
        return value.strip()                  # the common case, kept cheap
    return header_text(value, hint)


def _raw_values(tree: Message, name: str) -> list[str]:
    return [str(value) for key, value in tree.raw_items() if key.strip().lower() == name]


def _single_address(tree: Message, name: str, hint: str | None,
                    defects: list[str]) -> MailAddress | None:
    """The one address of a From, Sender or Reply-To; None, with a defect saying why, when
    the header fields do not name exactly one address unambiguously (two fields, two
    addresses, an address the readers of this mail could read differently: see
    `addresses.parse_address_list`). Routing, the customer match and the staff check then
    see no sender: such a header credits nobody."""
    values = _raw_values(tree, name.lower())
    if not values:
        return None
    if len(values) > 1:
        defects.append(f"address: {len(values)} {name} fields; taken as no {name}")
        return None
    value = unfold(values[0])
    read = parse_address_list(value)
    mailbox = read.single()
    if mailbox is None and "@" not in value and len(read.mailboxes) == 1:
        # no "@" at all ("MAILER-DAEMON <>" of a bounce): names nobody, so it cannot be
        # credited to anyone; kept as read, for the article's From
        mailbox = read.mailboxes[0]
    elif mailbox is None:
        if value:
            defects.append(f"address: {name} is not one unambiguous address "
                           f"({read.why_not_single()}); taken as no {name}")
        return None
    return _mail_address(mailbox.display, mailbox.address, hint)


def _addresses(tree: Message, name: str, hint: str | None,
               limits: ParseLimits) -> tuple[MailAddress, ...]:
    """Every address in every `name` header (RFC 5322 §3.4), display names decoded; a
    broken list is read as well as possible (`addresses.parse_address_list`, which does
    not recurse: a header of thousands of nested comments or groups is read like any)."""
    found: list[MailAddress] = []
    for value in _raw_values(tree, name):
        mailboxes = parse_address_list(unfold(value)).mailboxes
        if len(mailboxes) > limits.max_addresses_per_header:
            raise ParseLimitExceeded(f"addresses in {name}: {len(mailboxes)} > "
                                     f"{limits.max_addresses_per_header}")
        for mailbox in mailboxes:
            parsed = _mail_address(mailbox.display, mailbox.address, hint)
            if parsed is not None:
                found.append(parsed)
    return tuple(found)


def _mail_address(display: str, address: str, hint: str | None) -> MailAddress | None:
    """A mailbox as the pipeline sees it; its display name cut at `MAX_NAME_CHARS` (a From
    of thousands of nested comments has one that long, and it is shown, never matched)."""
    name = collapse_whitespace(header_text(display, hint))[:MAX_NAME_CHARS] if display else ""
    address = decode_surrogates(address, hint).strip()
    if " " in address and "@" in address:
        # "John Doe john@example.com" without angle brackets: keep the name apart.
        words = address.split()
        at_words = [w for w in words if "@" in w]
        address = at_words[-1].strip("<>")
        name = name or " ".join(w for w in words if w not in at_words)[:MAX_NAME_CHARS]
    if not name and not address:
        return None
    return MailAddress(name=name, address=address)


def _message_id(tree: Message, raw: bytes) -> tuple[str, bool]:
    """The Message-ID as "<id>"; missing or empty -> a stable one from the raw bytes."""
    for value in _raw_values(tree, "message-id"):
        ids = _ids_in(value)
        if ids:
            return ids[0], False
    digest = hashlib.sha256(raw).hexdigest()[:32]
    return f"<{digest}@{GENERATED_ID_DOMAIN}>", True


def _message_ids(tree: Message, name: str) -> tuple[str, ...]:
    """The "<id>"s of In-Reply-To / References (RFC 5322 §3.6.4), in order, each once."""
    found: list[str] = []
    for value in _raw_values(tree, name):
        found.extend(_ids_in(value))
    return tuple(dict.fromkeys(found))


def _ids_in(value: str) -> list[str]:
    value = decode_surrogates(unfold(value))
    ids = ["<" + "".join(m.split()) + ">" for m in _ANGLE_ID.findall(value) if m.strip()]
    if ids:
        return ids
    # Broken mailers write ids without angle brackets ("20180802.58E79@host").
    return [f"<{word}>" for word in value.split() if "@" in word and "<" not in word]


def _date(tree: Message, received: datetime) -> tuple[datetime, bool]:
    """The Date header as an aware datetime; the received time when missing or bogus."""
    if received.tzinfo is None:
        received = received.replace(tzinfo=UTC)
    values = _raw_values(tree, "date")
    if not values or not values[0].strip():
        return received, False
    try:
        parsed = parsedate_to_datetime(unfold(decode_surrogates(values[0])))
    except (TypeError, ValueError, IndexError, OverflowError):
        return received, False
    if parsed.tzinfo is None:                 # "-0000": RFC 5322 §3.3, no zone information
        parsed = parsed.replace(tzinfo=UTC)
    return parsed, True
