"""What an answer needs to know about its ticket, read once per event.

In: a ticket id (`ticket_facts`: one query for the ticket, its queue, template and customer,
one for its thread), or what the creator of a ticket just wrote (`new_ticket_facts`, no
query). Out: `TicketFacts`, with the queue's and template's settings from the config.

Guarantees: the customer's language decides, else the queue's; a ticket whose queue or
template was removed from the config (its tickets still exist) is answered from the
gateway's default address (`[outbound] from`) / without a template, never an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlmodel import Session

from gateway.config.settings import QueueSettings, Settings, TemplateSettings
from gateway.store.models import (
    Article,
    CustomerUser,
    Queue,
    Staff,
    Template,
    Ticket,
    TicketParticipant,
    table_of,
)
from gateway.tickets.ticket import storable

_ticket = table_of(Ticket)
_queue = table_of(Queue)
_template = table_of(Template)
_customer = table_of(CustomerUser)
_article = table_of(Article)
_participant = table_of(TicketParticipant)
_staff = table_of(Staff)


@dataclass(frozen=True)
class TicketFacts:
    id: int
    number: str
    title: str
    priority: int
    queue: QueueSettings
    template: TemplateSettings | None
    customer_name: str
    registered: bool                  # a customer user (may see customers-only FAQ articles)
    address: str                      # where the customer's mail goes ("" if none)
    language: str
    reply_token: str | None           # the customer's reply address (`+r-`)
    staff_token: str | None           # the staff reply address (`+s-`)
    thread: tuple[str, ...]           # the ticket's Message-IDs, oldest first
    # (name, address) of the ticket's participants (`tickets/participants.py`), who get its
    # staff answers and status mails as mails of their own
    participants: tuple[tuple[str, str], ...] = ()
    assignee: str = ""                # the owner's address (`#assign`, `#take`); "" if none
    first_response_due: datetime | None = None    # service levels (tickets/service_levels.py)
    solution_due: datetime | None = None


# built once (a statement built per call cost about as much as running it)
_TICKET_ROW = (
    select(_ticket, _queue.c.key.label("queue_key"), _template.c.key.label("template_key"),
           _customer.c.name.label("customer_name"), _customer.c.email.label("email"),
           _customer.c.language.label("customer_language"), _staff.c.email.label("assignee"))
    .select_from(_ticket.join(_queue, _queue.c.id == _ticket.c.queue_id)
                 .outerjoin(_template, _template.c.id == _ticket.c.template_id)
                 .outerjoin(_customer, _customer.c.id == _ticket.c.customer_user_id)
                 .outerjoin(_staff, _staff.c.id == _ticket.c.owner_staff_id))
    .where(_ticket.c.id == bindparam("ticket_id")))
_THREAD = (select(_article.c.message_id)
           .where(_article.c.ticket_id == bindparam("ticket_id"),
                  _article.c.message_id.is_not(None))
           .order_by(_article.c.created, _article.c.id))
_PARTICIPANTS = (select(_participant.c.name, _participant.c.address)
                 .where(_participant.c.ticket_id == bindparam("ticket_id"))
                 .order_by(_participant.c.id))


def ticket_facts(session: Session, settings: Settings, ticket_id: int) -> TicketFacts:
    key = {"ticket_id": ticket_id}
    row = session.execute(_TICKET_ROW, key).one()
    queue = _queue_settings(settings, row.queue_key)
    template = _template_settings(settings, row.template_key)
    thread = tuple(session.execute(_THREAD, key).scalars())
    address = row.email or row.contact_email or ""
    return TicketFacts(
        id=ticket_id, number=row.number, title=row.title, priority=row.priority, queue=queue,
        template=template, customer_name=row.customer_name or "",
        registered=row.customer_user_id is not None, address=address,
        language=row.customer_language or queue.language, reply_token=row.reply_token,
        staff_token=row.staff_token, thread=thread, assignee=row.assignee or "",
        first_response_due=row.first_response_due, solution_due=row.solution_due,
        participants=tuple((r.name, r.address)
                           for r in session.execute(_PARTICIPANTS, key)))


def new_ticket_facts(settings: Settings, ticket_id: int, *, number: str, title: str, priority: int,
                     queue: str, template: str | None, customer_name: str, registered: bool,
                     address: str, customer_language: str | None, reply_token: str | None,
                     staff_token: str | None, thread: tuple[str, ...],
                     first_response_due: datetime | None = None,
                     solution_due: datetime | None = None) -> TicketFacts:
    """The facts of a ticket its creator just wrote, as `ticket_facts` would read them back
    (the mail path saves those two queries for every new ticket)."""
    queue_settings = _queue_settings(settings, queue)
    return TicketFacts(
        id=ticket_id, number=number, title=storable(title).strip(), priority=priority,
        queue=queue_settings, template=_template_settings(settings, template),
        customer_name=customer_name, registered=registered, address=address,
        language=customer_language or queue_settings.language, reply_token=reply_token,
        staff_token=staff_token, thread=tuple(storable(m) for m in thread),
        first_response_due=first_response_due, solution_due=solution_due)


def _queue_settings(settings: Settings, key: str) -> QueueSettings:
    queue = next((q for q in settings.queue if q.id == key), None)
    if queue is None:                 # a queue removed from the config: answer as the default
        queue = QueueSettings.model_validate({"id": key, "from": settings.outbound.from_})
    return queue


def _template_settings(settings: Settings, key: str | None) -> TemplateSettings | None:
    return next((t for t in settings.template if t.id == key), None) if key else None
