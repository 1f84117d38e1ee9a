"""What routing decides about a mail: a new ticket, an append, ignore or reject.

In: nothing; `rules.route_message` builds these. Out: one frozen `Decision`, each naming the
routing `rule` that made it and a `reason` in words (what `ticketgw explain` prints), with
what the pipeline needs to carry it out.

Guarantees: decisions are frozen data with no behaviour: the pipeline acts on them, and
the same decision printed by `explain` is the one processing would carry out.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.routing.context import CustomerInfo, TicketInfo


@dataclass(frozen=True)
class FaqQuestion:
    """The stored question a "not solved" ticket starts with, and our answer to it."""

    received_mail_id: int
    answer_message_id: str


@dataclass(frozen=True)
class NewTicketDecision:
    rule: str
    reason: str
    title: str
    queue: str
    template: str | None
    priority: int
    customer: CustomerInfo | None
    contact: str
    guide_answers: tuple[tuple[str, str], ...] = ()
    missing_required: tuple[str, ...] = ()
    related_ticket: str | None = None      # a closed ticket this one follows up
    question: FaqQuestion | None = None    # "not solved": the ticket starts with this mail
    # `[inbound] several_templates = "each"`: tickets for the mail's other template addresses
    also: tuple[NewTicketDecision, ...] = ()
    # the From failed DMARC: why (staff are told; no customer account, no acknowledgment)
    unverified: str = ""
    claimed_ticket: str | None = None      # the ticket such a mail was addressed to


@dataclass(frozen=True)
class AppendDecision:
    rule: str
    reason: str
    ticket: TicketInfo
    sender_role: str                       # customer | participant | staff
    reopen: bool
    internal: bool = False                 # e.g. an out-of-office answer
    # a staff member's mail kept as an internal note instead of being carried out: why (they
    # are told by mail; docs/admin.md 5.2)
    held_back: str = ""


@dataclass(frozen=True)
class IgnoreDecision:
    rule: str
    reason: str
    ticket: TicketInfo | None = None       # e.g. the ticket a bounce belongs to
    faq_question: bool = False             # a question to the FAQ address: answer it
    # a staff member's `list` mail: mail them the overview of these queues (outbound/digest)
    staff_list: tuple[str, ...] = ()


@dataclass(frozen=True)
class RejectDecision:
    rule: str            # no-subject | unknown-sender | template-not-available | no-route
    reason: str
    answer: bool                           # may we explain it to the sender?
    template: str | None = None            # the template asked for, if any
    language: str = "de"                   # the sender's (a customer's) or the queue's
    queue: str | None = None               # the route's or template's queue: the answer's From


Decision = NewTicketDecision | AppendDecision | IgnoreDecision | RejectDecision
