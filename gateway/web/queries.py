"""What a logged-in customer may read: their ticket list, one ticket, one attachment.

In: a session and the `PortalUser`. Out: frozen rows for the page templates.

Guarantees (authorization): every query here is restricted by `visible_to(user)` — the
user's own tickets, or their organisation's when `[web] organisation_tickets` is on — and
by `Article.internal = false`; a ticket, article or attachment outside that is `None`, which
the pages answer with 404 (the same as a number that does not exist). Nothing is found by
an id alone: an attachment is looked up by its id *and* its ticket's number. What a search
matches, and through which index: `ticket_search`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import ColumnElement, and_, func, select
from sqlmodel import Session

from gateway.store.models import (
    Article,
    Attachment,
    CustomerUser,
    GuideAnswer,
    Template,
    Ticket,
    table_of,
)
from gateway.tickets.participants import participants_of
from gateway.web import ticket_search
from gateway.web.sessions import PortalUser

_ticket = table_of(Ticket)
_article = table_of(Article)
_attachment = table_of(Attachment)
_customer = table_of(CustomerUser)
_answer = table_of(GuideAnswer)
_template = table_of(Template)

Filter = Literal["all", "open", "closed"]
FILTERS: tuple[Filter, ...] = ("all", "open", "closed")
SORTS = {
    "number": (_ticket.c.number.desc(),),
    "number-asc": (_ticket.c.number.asc(),),
    "updated": (_ticket.c.updated.desc(), _ticket.c.number.desc()),
    "title": (_ticket.c.title.asc(), _ticket.c.number.desc()),
    "state": (_ticket.c.state.asc(), _ticket.c.number.desc()),
}
DEFAULT_SORT = "number"
EXCERPT = 120


def visible_to(user: PortalUser, *, organisation: bool) -> ColumnElement[bool]:
    if organisation and user.organisation_id is not None:
        return _ticket.c.customer_user_id.in_(
            select(_customer.c.id).where(_customer.c.organisation_id == user.organisation_id))
    return _ticket.c.customer_user_id == user.id


@dataclass(frozen=True)
class TicketRow:
    number: str
    title: str
    excerpt: str
    state: str
    created: datetime
    updated: datetime


@dataclass(frozen=True)
class TicketPage:
    rows: tuple[TicketRow, ...]
    total: int
    page: int
    pages: int


def list_tickets(session: Session, user: PortalUser, *, organisation: bool,
                 state: Filter = "all", q: str = "", sort: str = DEFAULT_SORT, page: int = 1,
                 page_size: int = 25) -> TicketPage:
    where = [visible_to(user, organisation=organisation)]
    if state == "open":
        where.append(_ticket.c.state != "closed")
    elif state == "closed":
        where.append(_ticket.c.state == "closed")
    if q.strip():
        where.append(ticket_search.search_condition(q.strip(),
                                                    session.get_bind().dialect.name))
    order = SORTS.get(sort, SORTS[DEFAULT_SORT])
    columns = (_ticket.c.id, _ticket.c.number, _ticket.c.title, _ticket.c.state,
               _ticket.c.created, _ticket.c.updated)
    if q.strip():
        # a search is evaluated once: every match's id in order (the count is their
        # number), then the page's rows; a count and a page query would search twice
        found = session.execute(select(_ticket.c.id).where(and_(*where)).order_by(*order)
                                ).scalars().all()
        total = len(found)
        pages = max(1, -(-total // page_size))
        page = min(max(1, page), pages)
        shown = found[(page - 1) * page_size:page * page_size]
        tickets = session.execute(select(*columns).where(_ticket.c.id.in_(shown))
                                  .order_by(*order)).all() if shown else []
    else:
        total = int(session.execute(select(func.count()).select_from(_ticket)
                                    .where(and_(*where))).scalar_one())
        pages = max(1, -(-total // page_size))
        page = min(max(1, page), pages)
        tickets = session.execute(
            select(*columns).where(and_(*where)).order_by(*order)
            .limit(page_size).offset((page - 1) * page_size)).all()
    excerpts = _first_texts(session, [t.id for t in tickets])
    rows = tuple(TicketRow(t.number, t.title, excerpts.get(t.id, ""), t.state, t.created,
                           t.updated) for t in tickets)
    return TicketPage(rows, total, page, pages)


def _first_texts(session: Session, ticket_ids: list[int]) -> dict[int, str]:
    """The start of each ticket's first visible article, one query for the whole page."""
    if not ticket_ids:
        return {}
    first = (select(func.min(_article.c.id))
             .where(_article.c.ticket_id.in_(ticket_ids), _article.c.internal.is_(False))
             .group_by(_article.c.ticket_id))
    rows = session.execute(select(_article.c.ticket_id,
                                  func.substr(_article.c.body, 1, EXCERPT * 2).label("start"))
                           .where(_article.c.id.in_(first)))
    result = {}
    for row in rows:
        text = " ".join((row.start or "").split())
        result[row.ticket_id] = text if len(text) <= EXCERPT else text[:EXCERPT - 1] + "…"
    return result


@dataclass(frozen=True)
class AttachmentView:
    id: int
    filename: str
    content_type: str
    size: int
    sha256: str
    content_id: str | None = None      # an inline image's cid (RFC 2392), for the HTML body


@dataclass(frozen=True)
class ArticleView:
    id: int
    direction: str
    channel: str
    sender: str
    from_address: str
    subject: str
    body: str
    quote_start: int | None
    body_html: str | None
    created: datetime
    attachments: tuple[AttachmentView, ...]
    remote_images: int = 0             # removed from body_html when the mail was stored

    @property
    def own_text(self) -> str:
        return self.body[:self.quote_start] if self.quote_start else self.body

    @property
    def quoted(self) -> str:
        return self.body[self.quote_start:] if self.quote_start else ""


@dataclass(frozen=True)
class TicketView:
    id: int
    number: str
    title: str
    state: str
    priority: int
    created: datetime
    updated: datetime
    articles: tuple[ArticleView, ...]
    participants: tuple[str, ...] = ()     # "Name <address>" or the address
    template_id: int | None = None
    guide_answers: tuple[tuple[str, str], ...] = ()     # (question key, answer)


def template_key(session: Session, template_id: int | None) -> str | None:
    """The configured id of a ticket's template (its labels are in the settings)."""
    if template_id is None:
        return None
    return session.execute(select(_template.c.key).where(_template.c.id == template_id)
                           ).scalar_one_or_none()


@dataclass(frozen=True)
class TicketKey:
    id: int
    state: str
    title: str


def find_visible_ticket(session: Session, user: PortalUser, number: str, *,
                        organisation: bool) -> TicketKey | None:
    """A ticket the user may see, else None."""
    row = session.execute(select(_ticket.c.id, _ticket.c.state, _ticket.c.title).where(
        _ticket.c.number == number, visible_to(user, organisation=organisation))).one_or_none()
    return TicketKey(row.id, row.state, row.title) if row else None


def ticket_view(session: Session, user: PortalUser, number: str, *,
                organisation: bool) -> TicketView | None:
    ticket = session.execute(select(_ticket).where(
        _ticket.c.number == number, visible_to(user, organisation=organisation))).one_or_none()
    if ticket is None:
        return None
    attachments: dict[int, list[AttachmentView]] = {}
    for a in session.execute(
            select(_attachment).join(_article, _article.c.id == _attachment.c.article_id)
            .where(_article.c.ticket_id == ticket.id, _article.c.internal.is_(False))
            .order_by(_attachment.c.id)):
        attachments.setdefault(a.article_id, []).append(
            AttachmentView(a.id, a.filename, a.content_type, a.size, a.sha256, a.content_id))
    articles = tuple(
        ArticleView(a.id, a.direction, a.channel, a.sender, a.from_address, a.subject, a.body,
                    a.quote_start, a.body_html, a.created, tuple(attachments.get(a.id, ())),
                    a.remote_images or 0)
        for a in session.execute(select(_article).where(
            _article.c.ticket_id == ticket.id, _article.c.internal.is_(False))
            .order_by(_article.c.created, _article.c.id)))
    people = tuple(f"{p.name} <{p.address}>" if p.name else p.address
                   for p in participants_of(session, ticket.id))
    answers = tuple((r.key, r.value) for r in session.execute(
        select(_answer.c.key, _answer.c.value).where(_answer.c.ticket_id == ticket.id)
        .order_by(_answer.c.id)))
    return TicketView(ticket.id, ticket.number, ticket.title, ticket.state, ticket.priority,
                      ticket.created, ticket.updated, articles, people, ticket.template_id,
                      answers)


def find_attachment(session: Session, user: PortalUser, number: str, attachment_id: int, *,
                    organisation: bool) -> AttachmentView | None:
    row = session.execute(
        select(_attachment)
        .join(_article, _article.c.id == _attachment.c.article_id)
        .join(_ticket, _ticket.c.id == _article.c.ticket_id)
        .where(_attachment.c.id == attachment_id, _ticket.c.number == number,
               _article.c.internal.is_(False), visible_to(user, organisation=organisation))
    ).one_or_none()
    if row is None:
        return None
    return AttachmentView(row.id, row.filename, row.content_type, row.size, row.sha256)
