"""Who is responsible for a ticket, in order: its assignee, then its queue's staff.

In: the caller's session and the settings (the queues and their staff). Out: staff addresses.

Guarantees: read only; the assignee (set by `#assign`, `#take` or `actions.assign`) comes
first, then each of the queue's configured staff in the config's order; an address appears
once (compared as `address_key`, case-insensitive). A ticket whose queue was removed from
the config yields only its assignee.
"""

from __future__ import annotations

from sqlmodel import Session

from gateway.config.settings import Settings
from gateway.mail.addresses import address_key
from gateway.tickets.facts import ticket_facts


def staff_to_remind(session: Session, settings: Settings, ticket_id: int) -> tuple[str, ...]:
    """The staff addresses to remind about the ticket, the assignee first (the SLA and
    pending reminders of issue #16 use this order: the assignee gets them first)."""
    facts = ticket_facts(session, settings, ticket_id)
    configured = next((q for q in settings.queue if q.id == facts.queue.id), None)
    ordered: dict[str, str] = {}
    for email in (facts.assignee, *(configured.staff if configured else ())):
        if email:
            ordered.setdefault(address_key(email).lower(), email)
    return tuple(ordered.values())
