"""The open tickets of a staff member's queues, in the order they should be worked on: what
the staff digest and the answer to a `list` mail show (issue #16 item 4).

In: a `Session`, the settings (a staff member's queues are the `[[queue]] staff` lists) and
the moment `now` the overview is for. Out: `OverviewEntry` records, never an error for an
empty result. Reads only.

Order: overdue tickets first (by due time), then the others that have a due time (soonest
first), then those without one, oldest first. Due times are the service levels'
(`tickets/service_levels.py`): the first-response due time until a staff answer met it, then
the solution due time; a ticket off the clock (pending) has none here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from gateway.config.settings import Settings
from gateway.mail.addresses import address_key
from gateway.store.models import CustomerUser, Queue, Staff, Ticket, table_of
from gateway.tickets.service_levels import RUNNING_STATES, next_due_of
from gateway.tickets.ticket import State

_ticket = table_of(Ticket)
_queue = table_of(Queue)
_customer = table_of(CustomerUser)
_staff = table_of(Staff)

DUE_SOON = timedelta(hours=24)        # "due soon": due within this long after `now`
MAX_ENTRIES = 200                     # a mail, not a report: the oldest beyond it are left out


@dataclass(frozen=True)
class OverviewEntry:
    number: str
    title: str
    state: str
    priority: int
    queue: str
    customer: str                     # name, else username, else the contact address
    created: datetime
    age: timedelta                    # `now` - created
    assignee: str                     # the owner's name or address, "" if nobody
    due: datetime | None
    urgency: str                      # overdue | due-soon | due | none
    staff_token: str | None           # the secret of the ticket's staff reply address


def staff_queues(settings: Settings, staff_address: str) -> list[str]:
    """The ids of the queues whose `staff` list names this address (case-insensitively)."""
    key = address_key(staff_address).lower()
    return [q.id for q in settings.queue
            if any(address_key(a).lower() == key for a in q.staff)]


def next_due(row: Any) -> datetime | None:
    """The ticket's next service-level due time, or None (no targets, or off the clock)."""
    if row.state not in RUNNING_STATES:
        return None
    return next_due_of(row.first_response_due, row.first_response_at, row.solution_due)


def open_overview(session: Session, queues: Sequence[str], now: datetime) -> list[OverviewEntry]:
    """The tickets of `queues` that are not closed and were created by `now`, in working
    order (see the module docstring), at most `MAX_ENTRIES`."""
    if not queues:
        return []
    rows = session.execute(
        select(_ticket, _queue.c.key.label("queue_key"),
               _customer.c.name.label("customer_name"),
               _customer.c.username.label("customer_username"),
               _staff.c.name.label("owner_name"), _staff.c.email.label("owner_email"))
        .select_from(_ticket.join(_queue, _queue.c.id == _ticket.c.queue_id)
                     .outerjoin(_customer, _customer.c.id == _ticket.c.customer_user_id)
                     .outerjoin(_staff, _staff.c.id == _ticket.c.owner_staff_id))
        .where(_queue.c.key.in_(list(queues)), _ticket.c.state != State.CLOSED.value,
               _ticket.c.created <= now)).all()
    return in_working_order([overview_entry(row, now) for row in rows])[:MAX_ENTRIES]


def in_working_order(entries: Sequence[OverviewEntry]) -> list[OverviewEntry]:
    """Overdue first (longest overdue first), then the others with a due time (soonest
    first), then those without one (oldest first)."""
    rank = {"overdue": 0, "due-soon": 1, "due": 1, "none": 2}
    return sorted(entries, key=lambda e: (rank[e.urgency], e.due or e.created, e.created,
                                          e.number))


def overview_entry(row: Any, now: datetime) -> OverviewEntry:
    """One ticket row (with `queue_key`, `customer_name`, `customer_username`, `owner_name`,
    `owner_email`) as an entry of the overview at `now`."""
    due = next_due(row)
    urgency = ("none" if due is None else "overdue" if due <= now
               else "due-soon" if due - now <= DUE_SOON else "due")
    return OverviewEntry(
        number=row.number, title=row.title, state=row.state, priority=row.priority,
        queue=row.queue_key,
        customer=row.customer_name or row.customer_username or row.contact_email or "",
        created=row.created, age=now - row.created,
        assignee=row.owner_name or row.owner_email or "", due=due, urgency=urgency,
        staff_token=row.staff_token)
