"""Header values for outbound mail, and the assembly of one finished message.

In: values of which many come from customers (names, subjects, the Message-IDs of their
mails) plus the rendered text and HTML bodies.
Out: `build_message(...)` -> the complete RFC 5322 message as bytes.

Guarantees:
- No header value produced here contains CR, LF or any other control character: they are
  replaced by a space *before* the stdlib sees the value (whose SMTP policy would raise on
  them), so a subject "Hi\\r\\nBcc: x" becomes the one line "Hi Bcc: x".
- An address that cannot be written safely raises `HeaderError`; it is never "repaired"
  into a different address.
- The output has CRLF line endings, folded headers (RFC 5322 §2.2.3) whose unbreakable
  parts are bounded (addresses 254, Message-IDs 250 characters) and bodies in
  quoted-printable: every line stays below the 998 octets of RFC 5322 §2.1.1, all of it
  7-bit, so the message passes relays without 8BITMIME.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parseaddr
from typing import Literal

from gateway.outbound.mime_writer import encoded_text, fold, mailbox, multipart_alternative

AutoSubmitted = Literal["auto-replied", "auto-generated", "no"]

SUBJECT_LIMIT = 200          # characters of subject text before the tag; the rest is cut
NAME_LIMIT = 120             # characters of a display name
REFERENCES_LIMIT = 20        # Message-IDs in References (the first one and the newest)
ADDRESS_LIMIT = 254          # RFC 5321 §4.5.3.1.3: a path is at most 256 octets with <>
MESSAGE_ID_LIMIT = 250       # longer foreign ids are dropped: they could not be folded

# Exchange/Outlook honour this instead of Auto-Submitted ([MS-OXCMAIL] 2.2.3.2.20). Not
# "All": that also suppresses non-delivery reports (NDR), and those we want back so that
# `delivery-failed` can tell staff. Out-of-office and other auto-replies are what loops.
AUTO_RESPONSE_SUPPRESS = "DR, RN, NRN, OOF, AutoReply"

# No `Precedence: bulk`: it is not a standard (RFC 2076 calls it "non-standard,
# controversial"; RFC 3834 §2 only asks responders to *honour* it), and filters treat
# "bulk" as mass mail, which must not happen to acknowledgments or password links.
# Auto-Submitted (RFC 3834 §5) and X-Auto-Response-Suppress are the signals we send.

_TAG = re.compile(r"\[\s*Ticket\s*#\s*\d+\s*\]", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_MSGID = re.compile(r"<[!-;=?-~]+@[!-;=?-~]+>")      # printable ASCII, no <, >, space


class HeaderError(ValueError):
    """A value cannot be written into a header safely (an invalid address)."""


@dataclass(frozen=True)
class MailIdentity:
    """A display name and an address: who a mail is from or to."""

    name: str
    address: str

    @classmethod
    def parse(cls, mailbox: str) -> MailIdentity:
        """`"Service Desk <support@example.com>"` (the config's `from`) -> identity."""
        name, address = parseaddr(mailbox)
        if not address:
            raise HeaderError(f"{mailbox!r} is not a mailbox like 'Name <user@domain>'")
        return cls(name, address)


def clean_header_text(text: str, limit: int = SUBJECT_LIMIT) -> str:
    """One line of text: control characters (CR, LF, TAB, NUL, U+2028 …) become spaces,
    runs of whitespace one space, and more than `limit` characters end in "…"."""
    flat = " ".join(_CONTROL.sub(" ", text).split())
    if len(flat) > limit:
        flat = flat[: limit - 1].rstrip() + "…"
    return flat


def tagged_subject(subject: str, ticket_number: str | None) -> str:
    """The subject with `[Ticket#NUMBER]` at the end (Zammad/OTRS style). Any tag already in
    the text is removed first, ours included, so the tag appears exactly once and a title
    that quotes another ticket's tag cannot thread replies to that ticket."""
    if ticket_number is None:
        return clean_header_text(subject)
    if not ticket_number.isascii() or not ticket_number.isdigit():
        raise HeaderError(f"ticket number {ticket_number!r} is not a number")
    text = clean_header_text(_TAG.sub(" ", subject))
    return f"{text} [Ticket#{ticket_number}]".lstrip()


@functools.lru_cache(maxsize=1024)
def split_address(address: str) -> tuple[str, str]:
    """`user@domain` -> (local part, ASCII domain). Internationalised domains are converted
    to their IDNA form; a non-ASCII local part would need SMTPUTF8 and is refused.
    Remembered per address (a pure function; a refusal is not remembered, it raises again):
    every mail splits the queue's address three times, each recipient's twice."""
    value = address.strip()
    local, at, domain = value.rpartition("@")
    if not at or len(value) > ADDRESS_LIMIT or not _LOCAL.fullmatch(local):
        raise HeaderError(f"{address!r} is not an address we can send to")
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise HeaderError(f"{address!r} has an invalid domain") from None
    if not all(_LABEL.fullmatch(label) for label in ascii_domain.split(".")):
        raise HeaderError(f"{address!r} has an invalid domain")
    return local, ascii_domain


def bare_address(address: str) -> str:
    """The address as it goes into MAIL FROM / RCPT TO."""
    local, domain = split_address(address)
    return f"{local}@{domain}"


def new_message_id(domain: str) -> str:
    """`<ticketgw.{16 hex}@domain>`: 64 random bits, recognisably ours (RFC 5322 §3.6.4)."""
    return f"<ticketgw.{secrets.token_hex(8)}@{domain}>"


def normalize_message_id(value: str) -> str | None:
    """A Message-ID as `<left@right>`, or None when it is not one (then it is left out:
    a foreign, malformed id must not break or extend our header)."""
    text = value.strip()
    if not text.startswith("<"):
        text = f"<{text}>"
    return text if len(text) <= MESSAGE_ID_LIMIT and _MSGID.fullmatch(text) else None


def thread_references(references: Iterable[str], in_reply_to: str | None) -> tuple[str, ...]:
    """References per RFC 5322 §3.6.4: the thread's ids, then the id answered. Duplicates
    and malformed ids are dropped; a long thread keeps its first id and the newest ones."""
    parent = normalize_message_id(in_reply_to) if in_reply_to else None
    ids: list[str] = []
    for value in references:
        mid = normalize_message_id(value)
        if mid and mid != parent and mid not in ids:
            ids.append(mid)
    room = REFERENCES_LIMIT - (1 if parent else 0)
    if len(ids) > room:
        ids = ids[:1] + ids[len(ids) - room + 1:]
    return (*ids, parent) if parent else tuple(ids)


@dataclass(frozen=True)
class MessageHeaders:
    """Everything of a message but its bodies; values already checked by the caller."""

    sender: MailIdentity
    to: Sequence[MailIdentity]
    subject: str
    message_id: str
    date: datetime
    reply_to: MailIdentity | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    auto_submitted: AutoSubmitted = "no"


@functools.lru_cache(maxsize=256)
def _mailbox_header(identity: MailIdentity) -> str:
    """`Name <local@domain>` with the name RFC 2047-encoded when it is not ASCII; remembered
    per identity (a pure function of name and address: the queue's From is in every mail)."""
    local, domain = split_address(identity.address)
    return mailbox(clean_header_text(identity.name, NAME_LIMIT), f"{local}@{domain}")


def check_mailbox(identity: MailIdentity) -> None:
    """Raise `HeaderError` when `identity` cannot be written into a header (the check
    `build_message` makes, done ahead when the bytes are written later)."""
    _mailbox_header(identity)


def build_message(headers: MessageHeaders, text: str, html: str) -> bytes:
    """multipart/alternative (text/plain, text/html; UTF-8, quoted-printable) with our
    headers, CRLF everywhere, folded headers (see `mime_writer` for why it is written by
    hand). Every value reaching a header is already one clean line (`clean_header_text`,
    `split_address`, `normalize_message_id`)."""
    lines = [fold("From", _mailbox_header(headers.sender)),
             fold("To", ", ".join(_mailbox_header(recipient) for recipient in headers.to))]
    if headers.reply_to is not None:
        lines.append(fold("Reply-To", _mailbox_header(headers.reply_to)))
    lines.append(encoded_text("Subject", clean_header_text(headers.subject, SUBJECT_LIMIT + 40)))
    date = headers.date if headers.date.tzinfo else headers.date.replace(tzinfo=UTC)
    lines.append(fold("Date", format_datetime(date)))
    lines.append(fold("Message-ID", headers.message_id))
    in_reply_to = normalize_message_id(headers.in_reply_to) if headers.in_reply_to else None
    if in_reply_to:
        lines.append(fold("In-Reply-To", in_reply_to))
    if headers.references:
        lines.append(fold("References", " ".join(headers.references)))
    if headers.auto_submitted != "no":
        lines.append(fold("Auto-Submitted", headers.auto_submitted))     # RFC 3834 §5
    lines.append(fold("X-Auto-Response-Suppress", AUTO_RESPONSE_SUPPRESS))
    return multipart_alternative(lines, text, html, seed=headers.message_id)
