"""A ticket's service levels: its due times, kept current as the ticket changes.

In: the session of the caller's transaction, the settings (targets per template and
priority, working hours per queue, holidays, the zone) and the ticket. Out: the ticket's
`first_response_due` / `solution_due` columns, `first_response_at`, and the paused clock.

Guarantees:
- due times are always `created + target + working time paused so far`, counted in the
  queue's working hours (`business_time.py`), so a priority change or a changed config
  recomputes them the same way (`recompute_due`);
- the clock stands while the ticket is `pending` or `closed` (`sla_paused_at`); leaving
  such a state adds the working time it stood to `sla_paused_seconds` and moves both due
  times;
- the first staff answer to the customer (never an internal note) meets the first-response
  target; later answers change nothing;
- a ticket whose template has no targets has no due times (None), never an error; nothing
  here commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, case, select, update
from sqlmodel import Session

from gateway.config.settings import Settings
from gateway.store.models import Queue, Template, Ticket, table_of, utcnow
from gateway.tickets.business_time import (
    Calendar,
    add_business_time,
    business_time_between,
    parse_duration,
    parse_hours,
)

_ticket = table_of(Ticket)
_queue = table_of(Queue)
_template = table_of(Template)

DEFAULT_WARN_BEFORE = timedelta(hours=1)
PAUSED_STATES = ("pending", "closed")      # the clock stands in these states
RUNNING_STATES = ("new", "open")


@dataclass(frozen=True)
class Targets:
    """One ticket's targets in working time (None: not watched)."""

    first_response: timedelta | None
    solution: timedelta | None
    warn_before: timedelta


@dataclass(frozen=True)
class DueTimes:
    first_response: datetime | None
    solution: datetime | None


def targets_for(settings: Settings, template_key: str | None, priority: int) -> Targets | None:
    """The template's `sla`, with its `sla_by_priority[priority]` over it; None when the
    template (or the ticket, without one) has no targets."""
    template = next((t for t in settings.template if t.id == template_key), None)
    if template is None:
        return None
    levels = [level for level in (template.sla, template.sla_by_priority.get(priority))
              if level is not None]
    if not levels:
        return None

    def pick(name: str) -> timedelta | None:
        value = next((getattr(level, name) for level in reversed(levels)
                      if getattr(level, name) is not None), None)
        return parse_duration(value) if value else None

    warn = pick("warn_before")
    targets = Targets(pick("first_response"), pick("solution"),
                      DEFAULT_WARN_BEFORE if warn is None else warn)
    return targets if targets.first_response or targets.solution else None


def calendar_for(settings: Settings, queue_key: str) -> Calendar:
    """The queue's working hours in `[tickets] timezone`, closed on `[tickets] holidays` and
    its own; around the clock (holidays included) when the queue has no `hours`."""
    zone = ZoneInfo(settings.tickets.timezone)
    queue = next((q for q in settings.queue if q.id == queue_key), None)
    if queue is None or not queue.hours.strip():
        return Calendar.around_the_clock(zone)
    holidays = frozenset([*settings.tickets.holidays, *queue.holidays])
    return Calendar(zone, parse_hours(queue.hours), holidays)


def next_due() -> ColumnElement[Any]:
    """The ticket's next due time as a SQL expression: the first-response due time until
    the first answer, then the solution due time (NULL: no target). Sort and filter by it
    (`ticket list --sort due`, the staff digest); only `RUNNING_STATES` are on the clock."""
    return case((and_(_ticket.c.first_response_at.is_(None),
                      _ticket.c.first_response_due.is_not(None)),
                 _ticket.c.first_response_due), else_=_ticket.c.solution_due)


def next_due_of(first_response_due: datetime | None, first_response_at: datetime | None,
                solution_due: datetime | None) -> datetime | None:
    """`next_due` for values already read: the first-response due time until it is met,
    then the solution due time."""
    if first_response_due is not None and first_response_at is None:
        return first_response_due
    return solution_due


def recompute_open_tickets(session: Session, settings: Settings) -> int:
    """Recompute the due times of every ticket that is not closed (after the targets or
    working hours in the config changed, or for tickets older than the targets); how many."""
    ids = list(session.execute(select(_ticket.c.id).where(_ticket.c.state != "closed")
                               .order_by(_ticket.c.id)).scalars())
    for ticket_id in ids:
        recompute_due(session, settings, ticket_id)
    return len(ids)


def start_clock(session: Session, settings: Settings, ticket_id: int) -> DueTimes:
    """Set a new ticket's due times from its creation time (what `recompute_due` does);
    without a single template with targets in the config, no query at all (the mail path
    runs this for every new ticket)."""
    if not any(t.sla or t.sla_by_priority for t in settings.template):
        return DueTimes(None, None)
    return recompute_due(session, settings, ticket_id)


def recompute_due(session: Session, settings: Settings, ticket_id: int) -> DueTimes:
    """Due times from the ticket's creation, current priority and template, its queue's
    calendar and the working time its clock stood so far; written to the ticket."""
    row = _clock_row(session, ticket_id)
    due = _due_times(settings, row)
    session.execute(update(_ticket).where(_ticket.c.id == ticket_id).values(
        first_response_due=due.first_response, solution_due=due.solution))
    return due


def note_state_change(session: Session, settings: Settings, ticket_id: int, old: str, new: str,
                      now: datetime | None = None) -> None:
    """Stop the clock when the ticket enters pending or closed; start it again (moving the
    due times by the working time it stood) when it leaves them."""
    now = now or utcnow()
    stops, starts = new in PAUSED_STATES, old in PAUSED_STATES
    if stops and not starts:
        session.execute(update(_ticket).where(_ticket.c.id == ticket_id)
                        .values(sla_paused_at=now))
    elif starts and not stops:
        row = _clock_row(session, ticket_id)
        paused = timedelta(0)
        if row.sla_paused_at is not None:
            paused = business_time_between(row.sla_paused_at, now,
                                           calendar_for(settings, row.queue_key))
        session.execute(update(_ticket).where(_ticket.c.id == ticket_id).values(
            sla_paused_at=None,
            sla_paused_seconds=row.sla_paused_seconds + int(paused.total_seconds())))
        recompute_due(session, settings, ticket_id)


def note_first_response(session: Session, ticket_id: int, now: datetime | None = None) -> bool:
    """A staff answer reached the customer: the first one meets the first-response target.
    False when it had been met before."""
    result = session.execute(update(_ticket).where(_ticket.c.id == ticket_id,
                                                   _ticket.c.first_response_at.is_(None))
                             .values(first_response_at=now or utcnow()))
    return bool(getattr(result, "rowcount", 0))


def _clock_row(session: Session, ticket_id: int) -> Any:
    return session.execute(
        select(_ticket.c.created, _ticket.c.priority, _ticket.c.sla_paused_at,
               _ticket.c.sla_paused_seconds, _queue.c.key.label("queue_key"),
               _template.c.key.label("template_key"))
        .select_from(_ticket.join(_queue, _queue.c.id == _ticket.c.queue_id)
                     .outerjoin(_template, _template.c.id == _ticket.c.template_id))
        .where(_ticket.c.id == ticket_id)).one()


def _due_times(settings: Settings, row: Any) -> DueTimes:
    targets = targets_for(settings, row.template_key, row.priority)
    if targets is None:
        return DueTimes(None, None)
    calendar = calendar_for(settings, row.queue_key)
    paused = timedelta(seconds=row.sla_paused_seconds)

    def due(target: timedelta | None) -> datetime | None:
        return add_business_time(row.created, target + paused, calendar) if target else None

    return DueTimes(due(targets.first_response), due(targets.solution))
