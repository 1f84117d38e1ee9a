"""Service-level reminders and escalations as of a given moment: the first half of the
periodic deadline check (`deadline_check.py`; the customer wait is `waiting.py`).

In: the session of one write transaction, an `Answering` (settings and renderer) and `now`
(the scheduler passes the clock's time every minute, `ticketgw sla check --as-of` any
moment). Out: the `DeadlineAction`s taken, each with its mails queued and an entry in the
ticket's history, in that transaction.

Guarantees:
- a ticket in `new` or `open` whose target is due within `warn_before` (working time) gets
  one `sla-reminder` per target to the staff to remind (its assignee first, then the queue's
  staff); a missed target one `sla-escalation` to `[[queue]] escalation` (else the same
  staff); a check that comes late sends the escalation only;
- each is sent once per ticket and target, also across repeated checks and several
  instances: the history entry is the record, and it is looked up again after the
  ticket's row is locked (`FOR UPDATE` on PostgreSQL; SQLite's writers take turns);
- a met first response (`first_response_at`), `pending` and `closed` tickets are left alone;
- `dry_run` decides the same but writes and queues nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlmodel import Session

from gateway.config.settings import Settings
from gateway.outbound import deadline_mails
from gateway.outbound.answers import Answering
from gateway.store.models import Queue, Template, Ticket, TicketHistory, table_of
from gateway.tickets.assignees import staff_to_remind
from gateway.tickets.business_time import business_time_between
from gateway.tickets.facts import ticket_facts
from gateway.tickets.service_levels import RUNNING_STATES, calendar_for, targets_for
from gateway.tickets.ticket import record_change

_ticket = table_of(Ticket)
_queue = table_of(Queue)
_template = table_of(Template)
_history = table_of(TicketHistory)

ACTOR = "system:sla"
REMINDER, ESCALATION = "sla-reminder", "sla-escalation"     # history fields and mail events


@dataclass(frozen=True)
class DeadlineAction:
    """One thing the check did (or, in a dry run, would do)."""

    ticket: str                          # the ticket number
    action: str                          # sla-reminder | sla-escalation | pending-reminder
    #                                      | pending-closed
    target: str | None                   # first-response | solution (service levels only)
    due: datetime | None
    recipients: tuple[str, ...]
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"ticket": self.ticket, "action": self.action, "target": self.target,
                "due": self.due.isoformat() if self.due else None,
                "recipients": list(self.recipients), "note": self.note}


def check_service_levels(session: Session, answering: Answering, now: datetime, *,
                         dry_run: bool = False) -> list[DeadlineAction]:
    """Reminders before and escalations after each target of the running tickets."""
    settings = answering.settings
    candidates = session.execute(
        select(_ticket.c.id, _ticket.c.number, _ticket.c.priority, _ticket.c.first_response_due,
               _ticket.c.first_response_at, _ticket.c.solution_due,
               _queue.c.key.label("queue_key"), _template.c.key.label("template_key"))
        .select_from(_ticket.join(_queue, _queue.c.id == _ticket.c.queue_id)
                     .outerjoin(_template, _template.c.id == _ticket.c.template_id))
        .where(_ticket.c.state.in_(RUNNING_STATES),
               or_(and_(_ticket.c.first_response_due.is_not(None),
                        _ticket.c.first_response_at.is_(None)),
                   _ticket.c.solution_due.is_not(None)))
        .order_by(_ticket.c.id)).all()
    sent = _sent(session, [row.id for row in candidates])
    actions: list[DeadlineAction] = []
    for row in candidates:
        for target, due, action in _due_targets(settings, row, now):
            if (row.id, action, target) in sent or (row.id, ESCALATION, target) in sent:
                continue
            done = _act(session, answering, row, target=target, due=due, action=action,
                        now=now, dry_run=dry_run)
            if done is not None:
                actions.append(done)
    return actions


def _due_targets(settings: Settings, row: Any,
                 now: datetime) -> list[tuple[str, datetime, str]]:
    """(target, due, reminder or escalation) for each target due soon or missed."""
    targets = targets_for(settings, row.template_key, row.priority)
    if targets is None:
        return []
    calendar = calendar_for(settings, row.queue_key)
    found = []
    watched = [("first-response", row.first_response_due if row.first_response_at is None
                else None), ("solution", row.solution_due)]
    for target, due in watched:
        if due is None:
            continue
        if now >= due:
            found.append((target, due, ESCALATION))
        elif business_time_between(now, due, calendar) <= targets.warn_before:
            found.append((target, due, REMINDER))
    return found


def _act(session: Session, answering: Answering, row: Any, *, target: str, due: datetime,
         action: str, now: datetime, dry_run: bool) -> DeadlineAction | None:
    """Lock the ticket, make sure no other check did it meanwhile, mail and record."""
    settings = answering.settings
    recipients = list(staff_to_remind(session, settings, row.id))
    assignee = recipients[0] if recipients and _has_assignee(session, row.id) else ""
    if action == ESCALATION:
        queue = next((q for q in settings.queue if q.id == row.queue_key), None)
        recipients = list(queue.escalation) if queue and queue.escalation else recipients
    if dry_run:
        return DeadlineAction(row.number, action, target, due, tuple(recipients))
    session.execute(select(_ticket.c.id).where(_ticket.c.id == row.id).with_for_update())
    if _sent(session, [row.id]) & {(row.id, action, target), (row.id, ESCALATION, target)}:
        return None
    facts = ticket_facts(session, settings, row.id)
    queued = deadline_mails.service_level_due(
        session, answering, facts, recipients=recipients, target=target, due=due,
        missed=action == ESCALATION, assignee=assignee)
    note = f"{target} due {due.isoformat()}: " + (
        f"mailed to {', '.join(queued)}" if queued else "nobody to mail (no staff configured)")
    record_change(session, row.id, ACTOR, action, None, note, now)
    return DeadlineAction(row.number, action, target, due, tuple(queued), note)


def _has_assignee(session: Session, ticket_id: int) -> bool:
    return session.execute(select(_ticket.c.owner_staff_id)
                           .where(_ticket.c.id == ticket_id)).scalar_one() is not None


def _sent(session: Session, ticket_ids: Sequence[int]) -> set[tuple[int, str, str]]:
    """(ticket, reminder/escalation, target) already recorded in the tickets' history."""
    if not ticket_ids:
        return set()
    rows = session.execute(select(_history.c.ticket_id, _history.c.field, _history.c.new_value)
                           .where(_history.c.ticket_id.in_(ticket_ids),
                                  _history.c.field.in_((REMINDER, ESCALATION))))
    return {(r.ticket_id, r.field, (r.new_value or "").partition(" ")[0]) for r in rows}
