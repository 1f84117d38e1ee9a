"""What the renderer hands to the outbox: one mail, its envelope and its bytes or the recipe
for them.

`MailRenderer.compose(...)` produces an `OutgoingMail` with a recipe (rendered at delivery),
`MailRenderer.render(...)` one with its bytes; `outbox.enqueue(session, mail)` stores it in
the caller's transaction; `outbox.drain(...)` renders what is still a recipe and sends it
through a `Transport`.
"""

from __future__ import annotations

from dataclasses import dataclass

EVENTS = (
    "ack",              # ticket created: number, title, template, priority, guide answers/missing
    "follow-up",        # a customer's follow-up was received (optional per queue)
    "status",           # the ticket's state changed
    "staff-answer",     # a staff member answered (from their mail client or the CLI)
    "reject",           # no subject / unknown sender / template not available / too large
    "staff-notify",     # to the queue's staff: new ticket or customer reply
    "delivery-failed",  # to the queue's staff: a mail of ours bounced or was refused (5xx)
    "command-failed",   # to a staff member: their command block was wrong, nothing carried out
    "kept-as-note",     # to a staff member: their mail may not act as staff, kept as a note
    "password-token",   # the "password lost" link
    "new-password",     # the generated password
    "file-link",        # a file-exchange link
    "faq-answer",       # matching FAQ articles
    "staff-digest",     # to a staff member: the open tickets of their queues (digest, `list`)
    "guide-complete",   # every required guide answer is there (once per ticket)
    "sla-reminder",     # to the staff to remind: a service-level target is due soon
    "sla-escalation",   # to [[queue]] escalation (else the staff): a target was missed
    "pending-reminder",  # to the customer: the ticket waits for their answer
    "pending-closed",   # to the customer: closed after waiting too long for their answer
)


@dataclass(frozen=True)
class OutgoingMail:
    event: str                      # one of EVENTS
    envelope_from: str              # the bare address for MAIL FROM (the queue's address)
    recipients: tuple[str, ...]     # bare addresses for RCPT TO
    message_id: str                 # "<…@our-domain>", also in the raw header
    raw: bytes | None = None        # the complete RFC 5322 message, CRLF line endings, or
    recipe: str | None = None       # what renders it at delivery (`render.compose`)
    ticket_id: int | None = None

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ValueError(f"unknown mail event {self.event!r}")
        if not self.recipients:
            raise ValueError("a mail needs at least one recipient")
        if (self.raw is None) == (self.recipe is None):
            raise ValueError("a mail has either its bytes or the recipe for them")
