"""The view of a mail that the loop rules (`loop_rules`) share: what kind a mail can be,
and the mail's inputs normalised once.

In: headers, MIME tree, readable text, the envelope sender, and our addresses and domains.
Out: a `Mail` whose readings (sender addresses, reverse path, report type, whether a mail
system sent it, its own words - `report_texts` -, its original message) are computed on
first use and then kept, so the rules that need the same reading pay for it once. Nothing
here decides a mail's kind. Never raises on a malformed tree: parts are walked with
`mime_walk` and read with `mime_text`'s lenient readers, both bounded.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from email.message import Message
from enum import StrEnum
from functools import cached_property
from typing import Protocol, runtime_checkable

from gateway.classify.bounces import Bounce
from gateway.mail.addresses import address_key, addresses_in
from gateway.mail.mime_html import tags_removed
from gateway.mail.mime_text import (
    MAX_TEXT,
    collapse_whitespace,
    header_items,
    normalize_newlines,
    part_text,
    repair_8bit,
)
from gateway.mail.mime_walk import STATUS_TYPES, walk
from gateway.mail.originals import OriginalMessage, find_original, message_ids_in


class MailKind(StrEnum):
    HUMAN = "human"                # written by a person: open or update a ticket, answer it
    AUTO_REPLY = "auto_reply"      # out-of-office, vacation, other RFC 3834 auto-replies
    BOUNCE = "bounce"              # delivery failed or delayed (DSN or an MTA's prose)
    COMPLAINT = "complaint"        # ARF feedback report (RFC 5965): abuse, opt-out, ...
    LIST = "list"                  # mailing list or bulk mail (List-Id, Precedence)
    LOOP = "loop"                  # sent by one of our own addresses
    AUTOMATIC = "automatic"        # other machine mail: notifications, read receipts,
                                   # successful-delivery DSNs, null or daemon senders


@runtime_checkable
class AddressOwner(Protocol):
    """Anything that knows our addresses (e.g. `AddressBook`): plus tags, case, patterns."""

    def is_ours(self, address: str) -> bool: ...


@dataclass(frozen=True)
class Found:
    kind: MailKind
    detail: str                              # what the rule saw, for the log
    bounce: Bounce | None = None
    original: OriginalMessage | None = None


NULL_SENDER = ""
DAEMON_LOCAL = re.compile(r"^(?:mailer[-_]?daemon|postmaster|post_master|"
                          r"mail\.delivery\.(?:sub)?system)$", re.I)
MAILER_DAEMON_LOCAL = re.compile(r"^(?:mailer[-_]?daemon|mail\.delivery\.(?:sub)?system)$",
                                 re.I)
DAEMON_NAME = re.compile(r"^\W*mail delivery (?:sub)?system\W*<", re.I)


class Mail:
    """The inputs, normalised once; expensive readings are computed on first use."""

    def __init__(self, headers: Mapping[str, str], mime: Message | None, body_text: str, *,
                 envelope_from: str | None, our_addresses: Collection[str] | AddressOwner,
                 our_domains: Collection[str]) -> None:
        self.headers: dict[str, str] = {}
        for name, value in headers.items():
            self.headers.setdefault(str(name).lower(),
                                    collapse_whitespace(repair_8bit(str(value or ""))))
        self.mime = mime
        self.body_text = body_text or ""
        self.our_domains = tuple(d.lower() for d in our_domains if d)
        if isinstance(our_addresses, AddressOwner):
            self._owner: AddressOwner | None = our_addresses
            self._ours: frozenset[str] = frozenset()
        else:
            self._owner = None
            self._ours = frozenset(address_key(a).lower() for a in our_addresses if a)
        self.envelope, self.envelope_source = self._envelope(envelope_from)

    def header(self, name: str) -> str:
        return self.headers.get(name, "")

    def _envelope(self, envelope_from: str | None) -> tuple[str | None, str]:
        """The reverse-path ("" is the null sender `<>`, None unknown): the SMTP one, else
        Return-Path (RFC 5321 §4.4: the delivering MTA records it), else an mbox From_ line."""
        if envelope_from is not None:
            return reverse_path(envelope_from), "envelope sender"
        if "return-path" in self.headers:
            return reverse_path(self.headers["return-path"]), "Return-Path"
        try:
            words = (self.mime.get_unixfrom() or "").split() if self.mime is not None else []
        except Exception:
            words = []
        if len(words) >= 2 and words[0] == "From":
            return reverse_path(words[1]), "mbox From line"
        return None, ""

    def is_ours(self, address: str) -> bool:
        """One of our addresses, also with a plus tag (`support+r-TOKEN@…`)."""
        if not address or "@" not in address:
            return False
        if self._owner is not None:
            return bool(self._owner.is_ours(address))
        local, _, domain = address.rpartition("@")
        base = local.split("+", 1)[0]
        return (address_key(address).lower() in self._ours
                or f"{base}@{domain}".lower() in self._ours)

    @cached_property
    def subject(self) -> str:
        return self.header("subject")

    @cached_property
    def texts(self) -> list[str]:
        return report_texts(self.mime, self.body_text)

    @cached_property
    def own_message_ids(self) -> tuple[str, ...]:
        values = [self.header("message-id")]
        if self.mime is not None:
            values += [v for n, v in header_items(self.mime) if n == "message-id"]
        return tuple(i for v in values for i in message_ids_in(v))

    @cached_property
    def report_type(self) -> str:
        """The top-level `multipart/report` report-type (RFC 6522), lower-case, or ""."""
        try:
            value = self.mime.get_param("report-type") if self.mime is not None else None
        except Exception:
            return ""
        return value.strip().lower() if isinstance(value, str) else ""

    @cached_property
    def daemon_sender(self) -> str:
        """The MAILER-DAEMON/postmaster address this mail comes from, or ""."""
        candidates = [self.header("from"), self.header("sender")]
        if self.envelope:
            candidates.append(self.envelope)
        for value in candidates:
            for address in _addresses_or_word(value):
                if DAEMON_LOCAL.match(address.rpartition("@")[0] or address):
                    return address
            if DAEMON_NAME.match(value):
                return value
        return ""

    @property
    def from_mail_system(self) -> bool:
        """Null reverse-path, or a daemon sender that is not a person's envelope."""
        return self.envelope == NULL_SENDER or (
            bool(self.daemon_sender) and not self.envelope_is_a_person)

    @cached_property
    def envelope_is_a_person(self) -> bool:
        """The reverse-path is known and may be a person's. Bounces are sent from the null
        reverse-path (RFC 5321 §4.5.5) or MAILER-DAEMON; postmaster@ is a mailbox people
        read and write from (RFC 5321 §4.5.1)."""
        return bool(self.envelope) and not any(
            MAILER_DAEMON_LOCAL.match(a.rpartition("@")[0] or a)
            for a in _addresses_or_word(self.envelope or ""))

    def original(self, fields: dict[str, str] | None = None) -> OriginalMessage:
        return find_original(self.mime, self.texts, extra_fields=fields,
                             in_reply_to=self.header("in-reply-to"),
                             exclude_ids=self.own_message_ids, our_domains=self.our_domains)


def reverse_path(value: str) -> str:
    """`<>` -> "" (the null reverse-path, RFC 5321 §4.5.5); `<a@b>` -> `a@b`."""
    text = value.strip()
    if text.startswith("<"):
        text = text[1:].split(">", 1)[0]
    return text.strip()


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
                markup.append(tags_removed(text))
            else:
                plain.append(text)
    texts = plain or markup
    if any(t.strip() for t in texts):
        return texts
    return [normalize_newlines(body_text[:MAX_TEXT])]


def _addresses_or_word(value: str) -> list[str]:
    found = list(addresses_in([value]))
    word = value.strip().strip("<>").strip()
    if not found and word and not any(c.isspace() for c in word):
        found = [word]          # "MAILER-DAEMON" without a domain
    return found
