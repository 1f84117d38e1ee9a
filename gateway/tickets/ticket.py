"""The ticket domain: create a ticket, append an article, change state and priority, reopen.

In: a `Session` inside the caller's transaction, and frozen dataclasses describing the change.
Out: the ids/numbers created; every change is written to `ticket_history`.

Guarantees: nothing here commits; the caller's transaction makes a change and everything it
caused (history, outbound mail) atomic. Inserts are SQLAlchemy Core statements, not ORM
objects, because this runs once per mail (see docs/performance notes in the README).
Invalid states or priorities raise `InvalidInput`; unknown numbers raise `NotFound`.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.dialects import postgresql
from sqlmodel import Session

from gateway.errors import InvalidInput, NotFound
from gateway.store.blobs import StoredBlob, record_blob
from gateway.store.models import (
    Article,
    Attachment,
    GuideAnswer,
    Ticket,
    TicketHistory,
    TicketMessageId,
    table_of,
    utcnow,
)
from gateway.store.upsert import upsert_for
from gateway.tickets.numbers import (
    Numbering,
    counter_cte,
    day_of,
    next_ticket_number,
    number_in_sql,
)


class State(StrEnum):
    NEW = "new"
    OPEN = "open"
    PENDING = "pending"
    CLOSED = "closed"


PRIORITY_NAMES = {1: "very low", 2: "low", 3: "normal", 4: "high", 5: "very high"}

_ticket = table_of(Ticket)
_article = table_of(Article)
_attachment = table_of(Attachment)
_answer = table_of(GuideAnswer)
_history = table_of(TicketHistory)
_message_id = table_of(TicketMessageId)

# Built once: giving the values at execution skips per-call statement building (about a
# fifth of a ticket's Python time, measured with bench/tickets.py and cProfile).
_INSERT_TICKET = insert(_ticket).returning(_ticket.c.id)
_INSERT_ARTICLE = insert(_article).returning(_article.c.id)
_INSERT_HISTORY = insert(_history)


def parse_state(text: str) -> State:
    try:
        return State(text.strip().lower())
    except ValueError:
        raise InvalidInput(
            f"{text!r} is not a state; use one of {', '.join(s.value for s in State)}"
        ) from None


def parse_priority(text: str | int) -> int:
    """`4`, `high`, `4 high` -> 4. Names are those of the contract."""
    value = str(text).strip().lower()
    number, _, name = value.partition(" ")
    known = number.isdigit() and int(number) in PRIORITY_NAMES
    if known and name in ("", PRIORITY_NAMES[int(number)]):   # "4" or "4 high", not "4 low"
        return int(number)
    for key, label in PRIORITY_NAMES.items():
        if value == label:
            return key
    choices = ", ".join(f"{k} ({v})" for k, v in PRIORITY_NAMES.items())
    raise InvalidInput(f"{text!r} is not a priority; use one of {choices}")


def priority_label(priority: int) -> str:
    return f"{priority} {PRIORITY_NAMES.get(priority, '?')}"


@dataclass(frozen=True)
class NewAttachment:
    filename: str
    content_type: str
    sha256: str          # content already written by BlobStore.put; its row is added here
    size: int
    content_id: str | None = None
    inline: bool = False


@dataclass(frozen=True)
class NewArticle:
    direction: str                      # in | out
    channel: str                        # mail | web | note
    sender: str                         # customer | staff | system
    body: str
    subject: str = ""
    from_address: str = ""
    to_addresses: str = ""
    internal: bool = False
    body_html: str | None = None
    remote_images: int = 0              # removed from body_html (mail.mime_html)
    quote_start: int | None = None
    message_id: str | None = None
    received_mail_id: int | None = None
    outbound_mail_id: int | None = None
    attachments: tuple[NewAttachment, ...] = ()

    def __post_init__(self) -> None:
        if self.direction not in ("in", "out"):
            raise InvalidInput(f"article direction {self.direction!r}: use in or out")
        if self.channel not in ("mail", "web", "note"):
            raise InvalidInput(f"article channel {self.channel!r}: use mail, web or note")
        if self.sender not in ("customer", "staff", "system"):
            raise InvalidInput(f"article sender {self.sender!r}: use customer, staff or system")


@dataclass(frozen=True)
class NewTicket:
    title: str
    queue_id: int
    first_article: NewArticle
    priority: int = 3
    template_id: int | None = None
    customer_user_id: int | None = None
    contact_email: str = ""
    reply_token: str | None = None      # the customer's reply address: local+r-TOKEN@domain
    staff_token: str | None = None      # the staff's: local+s-TOKEN@domain; None: one is made
    guide_answers: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    follows: str | None = None          # the number of a closed ticket this one continues


@dataclass(frozen=True)
class TicketRef:
    id: int
    number: str


def create_ticket(session: Session, new: NewTicket, *, numbering: Numbering, actor: str,
                  now: datetime | None = None) -> TicketRef:
    """Insert a ticket with its first article, guide answers and a `created` history entry.
    Every ticket gets a staff token (the secret of its staff reply address), made here when
    the caller brings none."""
    title = fitted(storable(new.title).strip(), 1000)
    if not title:
        raise InvalidInput("a ticket needs a title (the mail subject)")
    if new.priority not in PRIORITY_NAMES:
        raise InvalidInput(f"priority {new.priority} is not between 1 and 5")
    now = now or utcnow()
    values = {
        "title": title, "state": State.NEW.value, "priority": new.priority,
        "template_id": new.template_id, "queue_id": new.queue_id,
        "customer_user_id": new.customer_user_id, "contact_email": fitted(new.contact_email, 320),
        "owner_staff_id": None, "reply_token": new.reply_token,
        "staff_token": new.staff_token or secrets.token_urlsafe(18), "created": now,
        "updated": now, "closed": None,
    }
    if session.get_bind().dialect.name == "postgresql":
        ticket_id, number = _create_in_one_statement(session, values, new.first_article,
                                                     numbering, actor, now)
    else:
        number = next_ticket_number(session, numbering, now)
        ticket_id = session.execute(_INSERT_TICKET, values | {"number": number}).scalar_one()
        _record(session, ticket_id, actor, "created", None, State.NEW.value, now)
        _insert_article(session, ticket_id, new.first_article, now)
    if new.guide_answers:
        session.execute(insert(_answer), [
            {"ticket_id": ticket_id, "key": key, "value": storable(value)}
            for key, value in new.guide_answers
        ])
    if new.follows:
        _record(session, ticket_id, actor, "follows", None, new.follows, now)
    return TicketRef(ticket_id, number)


_CREATE: dict[bool, Any] = {}     # PostgreSQL: by "with a Message-ID", built once


def _create_in_one_statement(session: Session, values: dict[str, Any], article: NewArticle,
                             numbering: Numbering, actor: str, now: datetime
                             ) -> tuple[int, str]:
    """PostgreSQL: the day's counter, the ticket, its `created` history row, its first
    article and the article's Message-ID in one statement (data-modifying CTEs), one round
    trip instead of five; attachments follow as usual. The same rows as the other path."""
    article_values = _article_values(article)
    message_id = article_values["message_id"]
    statement = _CREATE.get(message_id is not None)
    if statement is None:
        statement = _CREATE[message_id is not None] = _create_statement(message_id is not None)
    day = day_of(numbering, now)
    row = session.execute(statement, {
        **values, "day": day, "prefix": f"{day}{numbering.system_id}", "actor": fitted(actor, 400),
        **{f"article_{name}": value for name, value in article_values.items()}}).one()
    _attach(session, row.article_id, article)
    _note_article_message_id(session, message_id)
    return row.id, row.number


def _create_statement(with_message_id: bool) -> Any:
    now = bindparam("created", type_=_ticket.c.created.type)   # also the history's and article's
    counter = counter_cte()
    ticket = insert(_ticket).values(
        number=select(number_in_sql(counter)).scalar_subquery(),
        **{name: bindparam(name, type_=_ticket.c[name].type)
           for name in ("title", "state", "priority", "template_id", "queue_id",
                        "customer_user_id", "contact_email", "owner_staff_id", "reply_token",
                        "staff_token", "updated", "closed")},
        created=now, sla_paused_seconds=0,
    ).returning(_ticket.c.id, _ticket.c.number).cte("new_ticket")
    ticket_id = select(ticket.c.id).scalar_subquery()
    history = insert(_history).values(
        ticket_id=ticket_id, at=now,
        actor=bindparam("actor", type_=_history.c.actor.type), field="created",
        old_value=None, new_value=State.NEW.value).cte("created_history")
    article = insert(_article).values(
        ticket_id=ticket_id,
        **{name: bindparam(f"article_{name}", type_=_article.c[name].type)
           for name in _ARTICLE_COLUMNS}, created=now,
    ).returning(_article.c.id, _article.c.ticket_id).cte("first_article")
    statement = (select(ticket.c.id, ticket.c.number, article.c.id.label("article_id"))
                 .select_from(ticket.join(article, article.c.ticket_id == ticket.c.id))
                 .add_cte(history))
    if with_message_id:
        remembered = (postgresql.insert(_message_id)
                      .values(message_id=bindparam("article_message_id",
                                                   type_=_message_id.c.message_id.type),
                              ticket_id=ticket_id)
                      .on_conflict_do_nothing(index_elements=["message_id"])
                      .cte("remembered"))
        statement = statement.add_cte(remembered)
    return statement


def add_article(session: Session, ticket_id: int, article: NewArticle,
                now: datetime | None = None) -> int:
    """Append an article to a ticket and touch its `updated` time; returns the article id."""
    now = now or utcnow()
    article_id = _insert_article(session, ticket_id, article, now)
    session.execute(update(_ticket).where(_ticket.c.id == ticket_id).values(updated=now))
    return article_id


def set_state(session: Session, ticket_id: int, state: State, *, actor: str,
              now: datetime | None = None) -> str | None:
    """Change the state (with history); the previous state, or None when it already had
    that state."""
    now = now or utcnow()
    current = _current(session, ticket_id)
    if current.state == state.value:
        return None
    closed = now if state is State.CLOSED else None
    session.execute(update(_ticket).where(_ticket.c.id == ticket_id)
                    .values(state=state.value, closed=closed, updated=now))
    _record(session, ticket_id, actor, "state", current.state, state.value, now)
    return current.state


def set_priority(session: Session, ticket_id: int, priority: int, *, actor: str,
                 now: datetime | None = None) -> bool:
    """Change the priority (with history); returns False when unchanged."""
    if priority not in PRIORITY_NAMES:
        raise InvalidInput(f"priority {priority} is not between 1 and 5")
    now = now or utcnow()
    current = _current(session, ticket_id)
    if current.priority == priority:
        return False
    session.execute(update(_ticket).where(_ticket.c.id == ticket_id)
                    .values(priority=priority, updated=now))
    _record(session, ticket_id, actor, "priority", str(current.priority), str(priority), now)
    return True


def reopen(session: Session, ticket_id: int, *, actor: str, now: datetime | None = None) -> bool:
    """A closed ticket becomes `open` again; any other state is left as it is."""
    if _current(session, ticket_id).state != State.CLOSED.value:
        return False
    return set_state(session, ticket_id, State.OPEN, actor=actor, now=now) is not None


def find_ticket(session: Session, number: str, *, for_update: bool = False) -> Ticket:
    """The ticket with this number; `NotFound` otherwise."""
    statement = select(Ticket).where(_ticket.c.number == number.strip())
    if for_update:
        statement = statement.with_for_update()
    ticket = session.execute(statement).scalar_one_or_none()
    if ticket is None:
        raise NotFound(f"no ticket with number {number!r}")
    return ticket


@dataclass(frozen=True)
class _Current:
    state: str
    priority: int


def _current(session: Session, ticket_id: int) -> _Current:
    """The ticket's state and priority, row-locked on PostgreSQL for the change."""
    row = session.execute(
        select(_ticket.c.state, _ticket.c.priority)
        .where(_ticket.c.id == ticket_id).with_for_update()
    ).one_or_none()
    if row is None:
        raise NotFound(f"no ticket with id {ticket_id}")
    return _Current(row.state, row.priority)


def storable(text: str) -> str:
    """Text as every database stores it: PostgreSQL refuses NUL in text columns, and a NUL
    carries nothing readable (the raw mail keeps the original bytes)."""
    return text.replace("\x00", "") if "\x00" in text else text


def fitted(text: str, limit: int) -> str:
    """`storable` text cut to its column's length: PostgreSQL refuses a longer value where
    SQLite stores it, so a 1,500-character subject or 150 recipients in To would fail every
    attempt. Only the stored copy is cut; the raw mail keeps every byte."""
    text = storable(text)
    return text if len(text) <= limit else text[:limit]


_ARTICLE_COLUMNS = ("direction", "channel", "internal", "sender", "from_address",
                    "to_addresses", "subject", "body", "body_html", "remote_images",
                    "quote_start", "message_id", "received_mail_id", "outbound_mail_id")


def _article_values(article: NewArticle) -> dict[str, Any]:
    """The article's row, as stored (`_ARTICLE_COLUMNS`)."""
    return {
        "direction": article.direction, "channel": article.channel,
        "internal": article.internal, "sender": article.sender,
        "from_address": fitted(article.from_address, 1000),
        "to_addresses": fitted(article.to_addresses, 4000),
        "subject": fitted(article.subject, 1000),
        "body": storable(article.body),
        "body_html": storable(article.body_html) if article.body_html else None,
        "remote_images": article.remote_images or None,
        "quote_start": article.quote_start,
        "message_id": fitted(article.message_id, 1000) if article.message_id else None,
        "received_mail_id": article.received_mail_id,
        "outbound_mail_id": article.outbound_mail_id,
    }


def _insert_article(session: Session, ticket_id: int, article: NewArticle, now: datetime) -> int:
    values = _article_values(article)
    article_id: int = session.execute(
        _INSERT_ARTICLE, values | {"ticket_id": ticket_id, "created": now}).scalar_one()
    _attach(session, article_id, article)
    _note_article_message_id(session, values["message_id"])
    if values["message_id"]:
        remember_message_ids(session, ticket_id, [values["message_id"]])
    return article_id


def _attach(session: Session, article_id: int, article: NewArticle) -> None:
    """The article's attachments (their content is in the blob store already)."""
    if article.attachments:
        for a in article.attachments:
            record_blob(session, StoredBlob(a.sha256, a.size))
        session.execute(insert(_attachment), [
            {"article_id": article_id, "sha256": a.sha256, "filename": fitted(a.filename, 1000),
             "content_type": fitted(a.content_type, 200),
             "content_id": fitted(a.content_id, 1000) if a.content_id else None,
             "inline": a.inline, "size": a.size}
            for a in article.attachments
        ])


_REMEMBER_MESSAGE_ID: dict[str, Any] = {}   # per dialect, built (and compiled) once
NEW_ARTICLE_MESSAGE_IDS = "tgw_new_article_message_ids"   # `Session.info` key


def _note_article_message_id(session: Session, message_id: str | None) -> None:
    """The Message-IDs of the articles this transaction added, in `Session.info`
    (`inbound/directory.py` answers "already an article?" from a look-up made before)."""
    if message_id:
        session.info.setdefault(NEW_ARTICLE_MESSAGE_IDS, set()).add(message_id)


def remember_message_ids(session: Session, ticket_id: int, message_ids: Sequence[str]) -> None:
    """Record Message-IDs the ticket sent or received, for In-Reply-To/References threading
    (several in one executemany). A Message-ID already known (a duplicate delivery) keeps
    its first ticket."""
    dialect = session.get_bind().dialect.name
    statement = _REMEMBER_MESSAGE_ID.get(dialect)
    if statement is None:
        statement = (upsert_for(session)(_message_id)
                     .on_conflict_do_nothing(index_elements=["message_id"]))
        _REMEMBER_MESSAGE_ID[dialect] = statement
    rows = [{"message_id": m, "ticket_id": ticket_id}
            for m in dict.fromkeys(fitted(m, 1000) for m in message_ids)]
    if rows:
        session.execute(statement, rows if len(rows) > 1 else rows[0])


def record_change(session: Session, ticket_id: int, actor: str, field_name: str,
                  old: str | None, new: str | None, now: datetime | None = None) -> None:
    """A history entry for a change made outside this module (e.g. the owner)."""
    _record(session, ticket_id, actor, field_name, old, new, now or utcnow())


def _record(session: Session, ticket_id: int, actor: str, field_name: str,
            old: str | None, new: str | None, now: datetime) -> None:
    session.execute(_INSERT_HISTORY, {
        "ticket_id": ticket_id, "at": now, "actor": fitted(actor, 400), "field": field_name,
        "old_value": old, "new_value": new,
    })
