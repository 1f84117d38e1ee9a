"""The original mail a bounce, complaint or read receipt is about.

In: the report's MIME tree (stdlib `Message`) and its own words (`loop_mail.report_texts`),
plus report fields and the report's own Message-IDs. Out: an `OriginalMessage` — the
original's Message-IDs (ours first, when our domains are known), Subject, From/To — which is
what the gateway matches against the Message-IDs and reply addresses it sent. Also
`message_ids_in`, the Message-IDs of one header value as the classifiers read them.

Sources, best first: an attached `message/rfc822` or `text/rfc822-headers` part (also one
whose headers slipped into its body, or a body part that carries the returned mail's headers
as its own), report fields (`Original-Message-ID` of RFC 8098, Exchange's
`X-Original-Message-ID`), headers quoted in the text below a marker such as
"--- Below this line is a copy of the message.", `Message-ID:` lines anywhere in the text,
and last the report's own In-Reply-To.

Pure; never raises on malformed input: what cannot be read is left out.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from email.policy import compat32

from gateway.mail.addresses import addresses_in
from gateway.mail.mime_text import MAX_TEXT, header_items, part_text
from gateway.mail.mime_walk import ORIGINAL_TYPES, attached_message, walk


@dataclass(frozen=True)
class OriginalMessage:
    """What a report tells about the mail it is about (usually one we sent)."""

    message_ids: tuple[str, ...] = ()      # "<id@host>", ours (our_domains) first
    subject: str = ""
    from_addresses: tuple[str, ...] = ()   # From, Sender, Reply-To, Return-Path: where a
                                           # reply-token address of ours would show
    to_addresses: tuple[str, ...] = ()     # To and Cc
    source: str = ""                       # where it was found, for the log

    def __bool__(self) -> bool:
        return bool(self.message_ids or self.subject or self.from_addresses
                    or self.to_addresses)


MESSAGE_ID = re.compile(r"<([^<>\s]+)>")
_ID_LINE = re.compile(r"^[ \t>]*Message-I[dD][ \t]*:[ \t]*(?:\n[ \t]+)?"
                      r"(<[^<>\s]+>|[^\s<>]+@[^\s<>]+)", re.M | re.I)
_HEADER_LINE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*[ \t]*:")
_MARKER_WORDS = re.compile(
    r"copy of the message|original message|message headers follow|returned message|"
    r"unsent message|original mail|original headers|headers of the original|"
    r"undelivered message|message follows|rejected message|header of the original|"
    r"original e-?mail|ursprüngliche nachricht|kopie der nachricht|message d'origine",
    re.I)
_DECORATION = " \t-=_*#>|:.()[]"
_MAIL_HEADER_NAMES = frozenset({"received", "return-path", "message-id", "date", "from", "to",
                                "subject", "dkim-signature"})
_TRACE_NAMES = frozenset({"received", "return-path", "message-id", "dkim-signature"})


def find_original(mime: Message | None, texts: Iterable[str], *,
                  extra_fields: dict[str, str] | None = None,
                  in_reply_to: str = "",
                  exclude_ids: Collection[str] = (),
                  our_domains: Collection[str] = ()) -> OriginalMessage:
    """Everything known about the original, merged (see the module docstring for the order).
    `exclude_ids` are the report's own Message-IDs, never the original's."""
    found: list[OriginalMessage] = []
    for part in walk(mime):
        if part.inside_original:
            continue
        if part.content_type in ORIGINAL_TYPES:
            found.append(_from_original_part(part.message, part.content_type))
        elif part.depth:
            # a body part carrying mail headers: the returned mail pasted in without its own
            # MIME wrapper, so its Received/Message-ID lines became the part's headers
            items = header_items(part.message)
            if any(name == "message-id" for name, _ in items):
                found.append(original_from_headers(items, "headers of a body part"))
    fields = extra_fields or {}
    field_ids = [i for name in ("original-message-id", "x-original-message-id")
                 for i in message_ids_in(fields.get(name, ""))]
    if field_ids:
        found.append(OriginalMessage(message_ids=tuple(field_ids), source="report fields"))
    for text in texts:
        _, quoted = split_quoted_original(text)
        if quoted:
            found.append(original_from_headers(parse_header_text(quoted), "quoted headers"))
        ids = [i for m in _ID_LINE.finditer(text) for i in message_ids_in(m.group(1))]
        if ids:
            found.append(OriginalMessage(message_ids=tuple(ids), source="Message-ID line"))
    if in_reply_to:
        found.append(OriginalMessage(message_ids=tuple(message_ids_in(in_reply_to)),
                                     source="In-Reply-To"))
    return merge_originals(found, exclude_ids, our_domains)


def _from_original_part(part: Message, ctype: str) -> OriginalMessage:
    inner = attached_message(part)
    if inner is None:                      # text/rfc822-headers: headers as text
        return original_from_headers(parse_header_text(part_text(part)), ctype)
    items = header_items(inner)
    if not any(name in ("message-id", "from", "to", "subject") for name, _ in items):
        # a blank line too many before the headers: they ended up in the body
        items = parse_header_text(part_text(inner) if not inner.is_multipart() else "")
    return original_from_headers(items, ctype)


def original_from_headers(items: list[tuple[str, str]], source: str) -> OriginalMessage:
    def all_of(*names: str) -> list[str]:
        return [value for name, value in items if name in names]

    ids = [i for value in all_of("message-id") for i in message_ids_in(value)]
    subjects = all_of("subject")
    return OriginalMessage(
        message_ids=tuple(dict.fromkeys(ids)),
        subject=subjects[0] if subjects else "",
        from_addresses=addresses_in(all_of("from", "sender", "reply-to", "return-path")),
        to_addresses=addresses_in(all_of("to", "cc")),
        source=source)


def message_ids_in(value: str) -> list[str]:
    """Message-IDs in a header value, as "<id>"; a bare `id@host` is accepted too."""
    found = [f"<{m}>" for m in MESSAGE_ID.findall(value) if m]
    if not found:
        bare = value.strip().strip("<>").split()
        if bare and "@" in bare[0]:
            found = [f"<{bare[0].strip('<>')}>"]
    return found


def merge_originals(found: list[OriginalMessage], exclude_ids: Collection[str],
                    our_domains: Collection[str]) -> OriginalMessage:
    """One `OriginalMessage` from several readings, best first: every Message-ID (without
    the report's own; ours first), From/To/Subject of the first reading that has them."""
    excluded = {i.lower() for i in exclude_ids}
    ids = list(dict.fromkeys(i for o in found for i in o.message_ids
                             if i.lower() not in excluded))
    domains = tuple(d.lower().strip(".") for d in our_domains if d)
    if domains:
        ids.sort(key=lambda i: not _id_is_ours(i, domains))   # stable: ours first
    first = next((o for o in found if o.subject or o.to_addresses or o.from_addresses), None)
    return OriginalMessage(
        message_ids=tuple(ids),
        subject=first.subject if first else "",
        from_addresses=first.from_addresses if first else (),
        to_addresses=first.to_addresses if first else (),
        source=", ".join(dict.fromkeys(o.source for o in found if o)))


def _id_is_ours(message_id: str, domains: tuple[str, ...]) -> bool:
    right = message_id.strip("<>").rpartition("@")[2].lower()
    return any(right == d or right.endswith("." + d) for d in domains)


def parse_header_text(text: str) -> list[tuple[str, str]]:
    """Headers written out as text (a `text/rfc822-headers` part, or quoted in a bounce):
    leading blank lines and a common indentation or `>` quoting are removed first."""
    lines = text[:MAX_TEXT].splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        return []
    first = lines[0]
    prefix = first[: len(first) - len(first.lstrip(" \t>"))]
    if prefix:
        lines = [line[len(prefix):] if line.startswith(prefix) else line.lstrip(" \t>")
                 for line in lines]
    try:
        parsed = HeaderParser(policy=compat32).parsestr("\n".join(lines) + "\n",
                                                        headersonly=True)
    except Exception:
        return []
    return header_items(parsed)


def split_quoted_original(text: str) -> tuple[str, str]:
    """(report, original): the text before and from where a bounce quotes the returned
    mail — a marker line ("--- Below this line is a copy of the message.") or else the
    first unindented block of mail headers. (text, "") when neither is found."""
    lines = text.splitlines(keepends=True)
    offset = 0
    header_start: int | None = None
    for index, line in enumerate(lines):
        if _is_marker(line):
            return text[:offset], text[offset + len(line):]
        if header_start is None and _starts_header_block(lines, index):
            header_start = offset
        offset += len(line)
    if header_start is not None:
        return text[:header_start], text[header_start:]
    return text, ""


def _starts_header_block(lines: list[str], index: int) -> bool:
    """Three or more header lines from here with a trace header (Received, Message-ID, ...)
    or both From and To: a mail's header, not the Content-* lines of a MIME part that lost
    its boundary, nor a "To:/Date:/Subject:" summary in the report's prose."""
    names: list[str] = []
    for line in lines[index: index + 16]:
        match = _HEADER_LINE.match(line)
        if match:
            names.append(match.group(0).rstrip(": \t").lower())
        elif not (names and line[:1] in (" ", "\t") and line.strip()):
            break
    found = set(names)
    return (len(names) >= 3 and names[0] in _MAIL_HEADER_NAMES | {"mime-version", "content-type"}
            and bool(found & _TRACE_NAMES or {"from", "to"} <= found))


def _is_marker(line: str) -> bool:
    stripped = line.strip()
    if not stripped or len(stripped) > 100 or not _MARKER_WORDS.search(stripped):
        return False
    decorated = stripped[:2] in ("--", "==", "**", "__", "##", ">>") or stripped.endswith(":")
    core = stripped.strip(_DECORATION).lower()
    return decorated or core.endswith(("follows", "follow", "below")) or len(core.split()) <= 4
