"""Read models of tickets for the CLI (and later the web view): listings and one ticket in
full. Field names are the contract of `ticket list --json` / `ticket show --json`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func, select
from sqlmodel import Session

from gateway.store.models import (
    Article,
    Attachment,
    CustomerUser,
    GuideAnswer,
    GuideQuestion,
    Queue,
    Staff,
    Template,
    Ticket,
    TicketHistory,
    table_of,
)
from gateway.tickets.participants import participants_of
from gateway.tickets.service_levels import RUNNING_STATES, next_due
from gateway.tickets.ticket import State, find_ticket, priority_label

StateFilter = Literal["all", "open", "closed"]
TicketSort = Literal["number", "due"]

_ticket = table_of(Ticket)
_article = table_of(Article)
_attachment = table_of(Attachment)
_customer = table_of(CustomerUser)
_queue = table_of(Queue)
_template = table_of(Template)
_answer = table_of(GuideAnswer)
_question = table_of(GuideQuestion)
_history = table_of(TicketHistory)
_staff = table_of(Staff)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def list_tickets(session: Session, *, state: StateFilter = "all", queue: str | None = None,
                 customer: str | None = None, assignee: str | None = None,
                 unassigned: bool = False, limit: int = 100, sort: TicketSort = "number",
                 due_before: datetime | None = None) -> list[dict[str, Any]]:
    """Tickets newest number first, or (`sort="due"`) the next due time first, tickets
    without one last; `open` means every state but closed (the contract). `due_before`:
    only tickets on the clock (new, open) whose next due time is before it (the overdue
    ones with `now`). `assignee`: only tickets of this staff member (address,
    case-insensitive); `unassigned`: only tickets nobody has taken."""
    due = next_due()
    statement = (
        select(_ticket.c.number, _ticket.c.title, _ticket.c.state, _ticket.c.priority,
               _template.c.key.label("template"), _queue.c.key.label("queue"),
               _customer.c.username.label("customer"), _ticket.c.contact_email,
               _staff.c.email.label("assignee"), _ticket.c.created, _ticket.c.updated,
               _ticket.c.first_response_due, _ticket.c.first_response_at,
               _ticket.c.solution_due, due.label("next_due"))
        .select_from(_ticket.join(_queue, _queue.c.id == _ticket.c.queue_id)
                     .outerjoin(_template, _template.c.id == _ticket.c.template_id)
                     .outerjoin(_customer, _customer.c.id == _ticket.c.customer_user_id)
                     .outerjoin(_staff, _staff.c.id == _ticket.c.owner_staff_id))
        .order_by(*((due.is_(None), due, _ticket.c.number) if sort == "due"
                    else (_ticket.c.number.desc(),)))
        .limit(limit)
    )
    if due_before is not None:
        statement = statement.where(_ticket.c.state.in_(RUNNING_STATES), due < due_before)
    if state == "open":
        statement = statement.where(_ticket.c.state != State.CLOSED.value)
    elif state == "closed":
        statement = statement.where(_ticket.c.state == State.CLOSED.value)
    if queue:
        statement = statement.where(_queue.c.key == queue)
    if customer:
        statement = statement.where(_customer.c.username == customer)
    if assignee:
        statement = statement.where(func.lower(_staff.c.email) == assignee.strip().lower())
    if unassigned:
        statement = statement.where(_ticket.c.owner_staff_id.is_(None))
    return [
        {"number": r.number, "title": r.title, "state": r.state, "priority": r.priority,
         "template": r.template, "queue": r.queue, "customer": r.customer,
         "contact": r.contact_email, "assignee": r.assignee, "created": _iso(r.created),
         "updated": _iso(r.updated),
         "first_response_due": _iso(r.first_response_due),
         "first_response_at": _iso(r.first_response_at),
         "solution_due": _iso(r.solution_due), "next_due": _iso(r.next_due)}
        for r in session.execute(statement)
    ]


def count_tickets_by_state(session: Session) -> dict[str, int]:
    rows = session.execute(select(_ticket.c.state, func.count()).group_by(_ticket.c.state))
    return {state: count for state, count in rows}


def ticket_detail(session: Session, number: str) -> dict[str, Any]:
    """One ticket with articles, attachments, guide answers, history and participants;
    `NotFound` if none."""
    ticket = find_ticket(session, number)
    names = session.execute(
        select(_queue.c.key.label("queue"), _template.c.key.label("template"),
               _customer.c.username.label("customer"), _staff.c.email.label("assignee"))
        .select_from(_ticket.join(_queue, _queue.c.id == _ticket.c.queue_id)
                     .outerjoin(_template, _template.c.id == _ticket.c.template_id)
                     .outerjoin(_customer, _customer.c.id == _ticket.c.customer_user_id)
                     .outerjoin(_staff, _staff.c.id == _ticket.c.owner_staff_id))
        .where(_ticket.c.id == ticket.id)
    ).one()
    attachments: dict[int, list[dict[str, Any]]] = {}
    for a in session.execute(
        select(_attachment).join(_article, _article.c.id == _attachment.c.article_id)
        .where(_article.c.ticket_id == ticket.id).order_by(_attachment.c.id)
    ):
        attachments.setdefault(a.article_id, []).append(
            {"filename": a.filename, "content_type": a.content_type, "size": a.size,
             "sha256": a.sha256, "inline": a.inline, "content_id": a.content_id})
    articles = [
        {"direction": a.direction, "channel": a.channel, "internal": a.internal,
         "sender": a.sender, "from": a.from_address, "to": a.to_addresses,
         "subject": a.subject, "body": a.body, "quote_start": a.quote_start,
         "message_id": a.message_id, "created": _iso(a.created),
         "attachments": attachments.get(a.id, [])}
        for a in session.execute(select(_article).where(_article.c.ticket_id == ticket.id)
                                 .order_by(_article.c.created, _article.c.id))
    ]
    history = [
        {"at": _iso(h.at), "actor": h.actor, "field": h.field, "old": h.old_value,
         "new": h.new_value}
        for h in session.execute(select(_history).where(_history.c.ticket_id == ticket.id)
                                 .order_by(_history.c.at, _history.c.id))
    ]
    answers = dict(session.execute(select(_answer.c.key, _answer.c.value)
                                   .where(_answer.c.ticket_id == ticket.id)
                                   .order_by(_answer.c.id)).all())
    required: list[str] = list(session.execute(select(_question.c.key).where(
        _question.c.template_id == ticket.template_id, _question.c.required.is_(True))
        .order_by(_question.c.position)).scalars()) if ticket.template_id else []
    return {
        "number": ticket.number, "title": ticket.title, "state": ticket.state,
        "priority": ticket.priority, "priority_label": priority_label(ticket.priority),
        "template": names.template, "queue": names.queue, "customer": names.customer,
        "contact": ticket.contact_email, "assignee": names.assignee,
        "created": _iso(ticket.created),
        "updated": _iso(ticket.updated), "closed": _iso(ticket.closed),
        "first_response_due": _iso(ticket.first_response_due),
        "first_response_at": _iso(ticket.first_response_at),
        "solution_due": _iso(ticket.solution_due),
        "sla_paused_at": _iso(ticket.sla_paused_at),
        "guide_answers": answers, "guide_missing": [k for k in required if k not in answers],
        "articles": articles, "history": history,
        "participants": [{"address": p.address, "name": p.name, "source": p.source,
                          "added_by": p.added_by, "added": _iso(p.added)}
                         for p in participants_of(session, ticket.id or 0)],
    }
