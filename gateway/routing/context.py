"""What routing is told besides the mail itself: its `MailContext`, and a `Directory`.

In: nothing; these are the types the caller hands to `rules.route_message`. `MailContext`
says where the mail was sent, what the loop classifier made of it and what our border MTA
vouches for (`SenderCheck`); a `Directory` answers
questions about the world (tickets, customers, staff, FAQ answers) with the frozen records
defined here (`TicketInfo`, `CustomerInfo`, `FaqAnswerInfo`).

Out: the protocol `inbound/directory.py` implements against the database, and tests with
an in-memory directory.

Guarantees: every record is frozen; a `Directory` only reads, so routing stays pure and
`ticketgw explain` can run it against the live database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class TicketInfo:
    id: int
    number: str
    state: str
    queue: str
    customer_user_id: int | None
    contact_key: str                       # address_key of the ticket's contact
    organisation: str = ""                 # the customer's organisation key, "" if none


@dataclass(frozen=True)
class CustomerInfo:
    id: int
    username: str
    organisation: str                      # organisation key, "" if none
    language: str
    name: str = ""
    email: str = ""                        # as stored (where the customer's mail goes)


@dataclass(frozen=True)
class FaqAnswerInfo:
    """An answer we mailed to a question sent to the FAQ address."""

    message_id: str                        # the answer's
    received_mail_id: int                  # the question's stored mail
    address_key: str                       # who asked
    subject: str                           # the question's subject


@dataclass(frozen=True)
class SenderCheck:
    """What our border MTA (`[inbound] authserv_id`) says about the domain of the From
    address, from its `Authentication-Results` (RFC 8601) and DMARC (RFC 7489):

    - `pass`: DMARC pass for that domain, or a DKIM pass signed by it (`header.d`);
    - `fail`: DMARC fail for that domain (and no such pass): the From is very likely forged;
    - `none`: no verdict we may believe (no header of our MTA, a hop we do not trust, or
      a domain without DMARC and without a DKIM signature of its own);
    - `unchecked`: `authserv_id` is empty, so nobody is checked.

    `detail` says why, in words, for the log, `explain` and the mails to staff."""

    result: str = "unchecked"            # pass | fail | none | unchecked
    detail: str = ""

    @property
    def vouched(self) -> bool:
        """May the From act as staff? Only with a pass, or when checks are off."""
        return self.result in ("pass", "unchecked")

    @property
    def failed(self) -> bool:
        """Is the From refused as the customer it names? Only on an explicit DMARC fail."""
        return self.result == "fail"


class Directory(Protocol):
    def ticket_by_reply_token(self, token: str) -> TicketInfo | None: ...
    def ticket_by_staff_token(self, token: str) -> TicketInfo | None: ...
    def ticket_by_message_ids(self, ids: Sequence[str]) -> tuple[TicketInfo, str] | None: ...
    def ticket_by_number(self, number: str) -> TicketInfo | None: ...
    def customer_by_address(self, address: str) -> CustomerInfo | None: ...
    def is_staff(self, address: str) -> bool: ...
    def is_participant(self, ticket_id: int, address: str) -> bool: ...
    def is_duplicate(self, message_id: str, body: str) -> bool: ...
    def faq_answer_by_message_ids(self, ids: Sequence[str]) -> FaqAnswerInfo | None: ...


@dataclass(frozen=True)
class MailContext:
    """What routing knows about the mail besides its content."""

    recipients: tuple[str, ...]            # envelope recipients, else To + Cc
    automatic: bool                        # loops.classify said: never answer it
    automatic_kind: str = "human"          # human | bounce | complaint | auto_reply | list | ...
    automatic_rule: str = ""               # the classifier's rule, e.g. read-receipt
    automatic_reason: str = ""
    original_message_ids: tuple[str, ...] = field(default_factory=tuple)  # what it reports on
    sender_check: SenderCheck = SenderCheck()   # set by the pipeline just before routing
