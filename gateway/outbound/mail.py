"""What the renderer hands to the outbox: one finished mail, bytes and envelope.

`render.render_mail(...)` produces an `OutgoingMail`; `outbox.enqueue(session, mail)` stores
it in the caller's transaction; `outbox.drain(...)` sends it through a `Transport`.
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
    raw: bytes                      # the complete RFC 5322 message, CRLF line endings
    ticket_id: int | None = None

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ValueError(f"unknown mail event {self.event!r}")
        if not self.recipients:
            raise ValueError("a mail needs at least one recipient")
