"""The periodic deadline check, as one function of the time: what the scheduler runs every
minute (`jobs.py`) and `ticketgw sla check --as-of` runs for any moment.

In: the session of one write transaction, an `Answering` and `now`. Out: the actions taken
(service-level reminders and escalations, then customer-wait reminders and closings), with
their mails queued and history written in that transaction; nothing with `dry_run`.
Guarantees: those of `deadlines.check_service_levels` and `waiting.check_customer_waits`:
each reminder, escalation and closing happens once, however often the check runs.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from gateway.outbound.answers import Answering
from gateway.tickets.deadlines import DeadlineAction, check_service_levels
from gateway.tickets.waiting import check_customer_waits


def check_deadlines(session: Session, answering: Answering, now: datetime, *,
                    dry_run: bool = False) -> list[DeadlineAction]:
    """Everything due as of `now`: service levels first, then waiting customers."""
    return [*check_service_levels(session, answering, now, dry_run=dry_run),
            *check_customer_waits(session, answering, now, dry_run=dry_run)]
