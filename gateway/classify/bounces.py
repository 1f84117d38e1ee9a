"""Delivery reports, read: who bounced, with which status, and for how long.

In: the parsed MIME tree of one mail (stdlib `email.message.Message`, compat32 or default
policy). Out: frozen dataclasses —

- `Bounce`: the recipients that failed or are delayed (`BouncedRecipient`: address, RFC 3463
  status, RFC 3464 action, hard or not) and the `OriginalMessage` the report is about
  (see `originals`; the gateway finds the ticket through its Message-IDs).
- `read_delivery_status`: RFC 3464 delivery status notifications (`message/delivery-status`,
  also sitting in the wrong container, written as plain text, or forwarded inside another
  mail system's bounce). The prose of non-standard bounces is read by `bounce_text`.
- `read_report_fields`: the fields of an RFC 5965 (ARF) feedback report or an RFC 8098
  read receipt.
- `field_blocks` / `text_field_blocks`: the `Name: value` groups all three report kinds are
  written in, from a report part or from plain text.

Parts are found with `mime_walk.walk` (at most MAX_PARTS parts, MAX_DEPTH levels) and read
with `mime_text`'s lenient readers (at most MAX_TEXT characters per text).

Pure: no I/O. Never raises on malformed input: what cannot be read is left out.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from email.message import Message

from gateway.mail.addresses import ADDRESS
from gateway.mail.mime_text import MAX_TEXT, collapse_whitespace, header_items, part_text
from gateway.mail.mime_walk import ORIGINAL_TYPES, STATUS_TYPES, attached_message, payload_of, walk
from gateway.mail.originals import OriginalMessage

# RFC 3463 enhanced status codes. The look-arounds keep IP addresses ("10.5.1.1") and
# versions ("v4.6.1") out; class 2 (success) only counts in a DSN's Status field.
ENHANCED = re.compile(r"(?<![\w.])([245])\.([0-7])\.(\d{1,3})(?![\w]|\.\d)")
BOUNCE_CODE = re.compile(r"(?<![\w.])([45])\.([0-7])\.(\d{1,3})(?![\w]|\.\d)")
# RFC 5321 §4.2 reply codes 4xx/5xx as MTAs quote them ("550 ", "550-", "said: 550").
REPLY_CODE = re.compile(r"(?:^|[\s(\[:<>-])([45][0-5]\d)(?=[\s\-:;,.)\]]|$)", re.M)
_ACTIONS = frozenset({"failed", "delayed", "delivered", "relayed", "expanded"})


@dataclass(frozen=True)
class BouncedRecipient:
    """One recipient a delivery report says we could not (yet) reach."""

    address: str           # the address we sent to: Original-Recipient when given, else Final
    status: str            # RFC 3463 "5.1.1"; "5.0.0"/"4.0.0" derived from a bare reply code,
                           # "4.4.7" from "retry timeout exceeded"; "" when nothing says
    action: str            # "failed" (given up) or "delayed" (still trying), RFC 3464 §2.3.3
    diagnostic: str = ""   # the remote server's words, one line, shortened

    @property
    def permanent(self) -> bool:
        """A hard bounce: the address itself is refused. Delayed deliveries and mails given
        up after temporary (4.x.x) errors, e.g. 4.4.7 expired, are not hard bounces."""
        return self.action == "failed" and not self.status.startswith("4")


@dataclass(frozen=True)
class Bounce:
    """A delivery report (or an abuse complaint, then without recipients) about a mail."""

    recipients: tuple[BouncedRecipient, ...]
    original: OriginalMessage

    @property
    def original_message_ids(self) -> tuple[str, ...]:
        return self.original.message_ids

    @property
    def permanent(self) -> bool:
        """At least one recipient bounced hard."""
        return any(r.permanent for r in self.recipients)

    @property
    def delayed(self) -> bool:
        """Only a warning: every recipient is still being tried."""
        return bool(self.recipients) and all(r.action == "delayed" for r in self.recipients)


@dataclass(frozen=True)
class DeliveryStatus:
    """What the `message/delivery-status` part(s) of a mail say."""

    recipients: tuple[BouncedRecipient, ...]   # failed or delayed, one per address
    named: bool                   # some recipient block had an address (else unreadable)
    unnamed: tuple[BouncedRecipient, ...] = ()  # failed/delayed blocks without an address
                                  # (Exim names a file or pipe): their status still counts
    inner: Message | None = None  # the attached mail the status came from, when a mail
                                  # system forwarded a DSN inside its own bounce


def read_delivery_status(mime: Message | None, *, text_fallback: bool = False,
                         nested: bool = False) -> DeliveryStatus | None:
    """The recipients of an RFC 3464 DSN that failed or were delayed.

    None when the mail has no `message/delivery-status` part. With `text_fallback`, the
    `Final-Recipient` + `Status` fields some MTAs write as plain text count too, and with
    `nested` a DSN attached to the mail (one mail system's bounce wrapping another's): the
    caller allows both only for mail from a mail system, since a person may paste or forward
    a bounce. Successful deliveries (Action delivered/relayed/expanded) are left out, so a
    success notice gives no recipients but `named`."""
    blocks: list[dict[str, str]] = []
    found_part = False
    for part in walk(mime):
        if part.content_type in STATUS_TYPES and not part.inside_original:
            found_part = True
            blocks.extend(field_blocks(part.message))
    if not found_part and text_fallback:
        for part in walk(mime):     # also a multipart whose boundary is broken: one text
            if ((part.content_type == "text/plain" or part.broken_multipart)
                    and not part.inside_original and not part.message.is_multipart()):
                blocks.extend(b for b in text_field_blocks(part_text(part.message))
                              if _is_recipient_block(b) and "status" in b)
    if not found_part and not blocks:
        return _nested_status(mime) if nested else None
    named = False
    result: dict[str, BouncedRecipient] = {}
    unnamed: list[BouncedRecipient] = []
    for block in blocks:
        if not _is_recipient_block(block):
            continue
        # RFC 3464 §2.3.1/§2.3.2: Original-Recipient is the address we gave (ORCPT);
        # Final-Recipient may be an alias or forward target we never wrote to
        address = (_dsn_address(block.get("original-recipient", ""))
                   or _dsn_address(block.get("final-recipient", ""))
                   or _dsn_address(block.get("x-actual-recipient", "")))
        recipient = _dsn_recipient(address, block)
        if not address:
            if recipient is not None:
                unnamed.append(recipient)
            continue
        named = True
        if recipient is not None:
            key = address.lower()
            if key not in result or _severity(recipient) > _severity(result[key]):
                result[key] = recipient
    return DeliveryStatus(tuple(result.values()), named, tuple(unnamed))


def _nested_status(mime: Message | None) -> DeliveryStatus | None:
    for part in walk(mime):
        if part.content_type in ORIGINAL_TYPES and not part.inside_original:
            inner_mail = attached_message(part.message)
            inner = read_delivery_status(inner_mail) if inner_mail is not None else None
            if inner is not None and inner.named:
                return DeliveryStatus(inner.recipients, True, inner.unnamed, inner_mail)
    return None


def _is_recipient_block(block: dict[str, str]) -> bool:
    return "final-recipient" in block or "original-recipient" in block


def _dsn_address(value: str) -> str:
    """`rfc822; <a@b>` -> `a@b` (RFC 3464 §2.3.1: address-type ";" generic-address)."""
    _, semi, rest = value.partition(";")
    candidate = (rest if semi else value)[:500].strip().strip("<>").strip()
    match = ADDRESS.search(candidate)
    return match.group(0) if match else ""


def _dsn_recipient(address: str, block: dict[str, str]) -> BouncedRecipient | None:
    action_words = block.get("action", "").lower().split()
    action = action_words[0].strip(";,()") if action_words else ""
    diagnostic = block.get("diagnostic-code", "")
    status = _status_of(block.get("status", ""), diagnostic)
    if action not in _ACTIONS:
        action = {"2": "delivered", "4": "delayed"}.get(status[:1], "failed")
    if action in ("delivered", "relayed", "expanded"):
        return None
    _, semi, words = diagnostic.partition(";")
    return BouncedRecipient(address, status, action, short(words if semi else diagnostic))


def _status_of(status_field: str, diagnostic: str) -> str:
    """The Status field's code, refined by the diagnostic's code of the same class when the
    field only says x.0.0 (many MTAs put the precise code only in the diagnostic)."""
    match = ENHANCED.search(status_field)
    status = ".".join(match.groups()) if match else ""
    precise = ENHANCED.search(diagnostic)
    if precise and (not status or (status.endswith(".0.0") and precise.group(1) == status[0])):
        return ".".join(precise.groups())
    return status or reply_code_status(diagnostic)


def reply_code_status(text: str) -> str:
    """The RFC 3463 class a bare SMTP reply code in `text` stands for ("550 ..." -> "5.0.0",
    "421-..." -> "4.0.0"), or "" when the text quotes none."""
    reply = REPLY_CODE.search(text)
    return f"{reply.group(1)[0]}.0.0" if reply else ""


def _severity(recipient: BouncedRecipient) -> int:
    return 2 if recipient.permanent else 1 if recipient.action == "failed" else 0


def short(text: str, limit: int = 200) -> str:
    """One line, at most `limit` characters."""
    text = collapse_whitespace(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def read_report_fields(mime: Message | None, content_types: Collection[str]) -> dict[str, str]:
    """The merged fields of the first report part of one of `content_types`
    (`message/feedback-report`, RFC 5965 §3; `message/disposition-notification`,
    RFC 8098 §3), or {} when there is none."""
    for part in walk(mime):
        if part.content_type in content_types and not part.inside_original:
            merged: dict[str, str] = {}
            for block in field_blocks(part.message):
                for name, value in block.items():
                    merged.setdefault(name, value)
            return merged
    return {}


# -- field blocks (RFC 3464 §2.1, RFC 5965 §3, RFC 8098 §3) -----------------------------------

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
