"""Waiting for the customer: a `pending` ticket reminds its customer after
`[[queue]] pending_reminder_days` and is closed after `pending_close_days` (both off by
default), the second half of the periodic deadline check (`deadline_check.py`).

In: the session of one write transaction, an `Answering` and `now`. Out: `DeadlineAction`s,
with the mail queued and the history written in that transaction.

Guarantees:
- the days count from the ticket's last change to `pending` (its history), in plain
  calendar days (the customer's time, not the desk's working hours);
- one reminder per stay in `pending` (`pending-reminder` in the history, naming the
  moment the stay began); the closing sends the customer `pending-closed` instead of the
  status mail, and the participants the status mail; a check that comes late only closes
  (one mail to the customer);
- a customer reply makes the ticket `open` again (`actions.end_customer_wait`), which ends
  the wait; the ticket row is locked and its state read again before anything is done, so
  a reply committed meanwhile wins and a second instance does nothing twice;
- `dry_run` decides the same but writes and queues nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from gateway.outbound import answers, deadline_mails
from gateway.outbound.answers import Answering
from gateway.store.models import Queue, Ticket, TicketHistory, table_of
from gateway.tickets.actions import change_state
from gateway.tickets.deadlines import DeadlineAction
from gateway.tickets.facts import ticket_facts
from gateway.tickets.ticket import State, record_change

_ticket = table_of(Ticket)
_queue = table_of(Queue)
_history = table_of(TicketHistory)

ACTOR = "system:customer-wait"
REMINDER, CLOSED = "pending-reminder", "pending-closed"


def check_customer_waits(session: Session, answering: Answering, now: datetime, *,
                         dry_run: bool = False) -> list[DeadlineAction]:
    """Remind or close the pending tickets of queues that wait for their customers."""
    waiting = {q.id: q for q in answering.settings.queue
               if q.pending_reminder_days or q.pending_close_days}
    if not waiting:
        return []
    since = (select(func.max(_history.c.at)).where(
        _history.c.ticket_id == _ticket.c.id, _history.c.field == "state",
        _history.c.new_value == State.PENDING.value).scalar_subquery())
    rows = session.execute(
        select(_ticket.c.id, _ticket.c.number, _ticket.c.updated, _queue.c.key.label("queue"),
               since.label("since"))
        .select_from(_ticket.join(_queue, _queue.c.id == _ticket.c.queue_id))
        .where(_ticket.c.state == State.PENDING.value, _queue.c.key.in_(list(waiting)))
        .order_by(_ticket.c.id)).all()
    actions = []
    for row in rows:
        queue = waiting[row.queue]
        started = row.since or row.updated
        close_at = started + timedelta(days=queue.pending_close_days) \
            if queue.pending_close_days else None
        remind_at = started + timedelta(days=queue.pending_reminder_days) \
            if queue.pending_reminder_days else None
        if close_at is not None and now >= close_at:
            action = _close(session, answering, row, started, queue.pending_close_days, now,
                            dry_run)
        elif remind_at is not None and now >= remind_at:
            action = _remind(session, answering, row, started, close_at, now, dry_run)
        else:
            continue
        if action is not None:
            actions.append(action)
    return actions


def _close(session: Session, answering: Answering, row: Any, started: datetime, days: int,
           now: datetime, dry_run: bool) -> DeadlineAction | None:
    if dry_run:
        return DeadlineAction(row.number, CLOSED, None, started + timedelta(days=days), ())
    if not _still_pending(session, row.id):
        return None
    change_state(session, answering, row.id, State.CLOSED, actor=ACTOR, now=now, announce=False)
    note = deadline_mails.customer_wait(session, answering, ticket_facts(
        session, answering.settings, row.id), closed=True, days=days)
    # `pending-closed` replaces the customer's status mail; the participants (docs/admin.md
    # 1.9: they get the status mails) were not asked anything and learn of it as of any close
    answers.state_changed(session, answering, row.id, State.PENDING.value,
                          State.CLOSED.value, to_customer=False)
    record_change(session, row.id, ACTOR, CLOSED, None, f"after {days} days: {note}", now)
    return DeadlineAction(row.number, CLOSED, None, started + timedelta(days=days),
                          _recipients(note), note)


def _remind(session: Session, answering: Answering, row: Any, started: datetime,
            close_at: datetime | None, now: datetime, dry_run: bool) -> DeadlineAction | None:
    if _reminded_since(session, row.id, started):
        return None
    if dry_run:
        return DeadlineAction(row.number, REMINDER, None, close_at, ())
    if not _still_pending(session, row.id) or _reminded_since(session, row.id, started):
        return None
    note = deadline_mails.customer_wait(session, answering, ticket_facts(
        session, answering.settings, row.id), closed=False, close_on=close_at)
    record_change(session, row.id, ACTOR, REMINDER, started.isoformat(), note, now)
    return DeadlineAction(row.number, REMINDER, None, close_at, _recipients(note), note)


def _still_pending(session: Session, ticket_id: int) -> bool:
    """The ticket's state, read again under its row lock (`FOR UPDATE` on PostgreSQL)."""
    state = session.execute(select(_ticket.c.state).where(_ticket.c.id == ticket_id)
                            .with_for_update()).scalar_one()
    return bool(state == State.PENDING.value)


def _reminded_since(session: Session, ticket_id: int, started: datetime) -> bool:
    """A reminder for this stay in pending: its history entry names the stay's start (as
    its old value), so a check run for another moment (`--as-of`) cannot confuse stays."""
    return session.execute(select(_history.c.id).where(
        _history.c.ticket_id == ticket_id, _history.c.field == REMINDER,
        _history.c.old_value == started.isoformat()).limit(1)).first() is not None


def _recipients(note: str) -> tuple[str, ...]:
    return (note.removeprefix("mailed to "),) if note.startswith("mailed to ") else ()
