"""The database answering routing's questions (`routing.Directory`), inside the caller's
transaction. Read-only: `ticketgw explain` uses it as it is.

Every lookup is an indexed query (Message-IDs, reply tokens, ticket numbers, address keys),
so threading a reply costs what opening a ticket costs. "Is this mail already an article?"
(`is_duplicate`) is asked of every mail: the worker asks first, for its whole batch in one
query, which of the mails' Message-IDs any article has (`look_up_message_ids`, kept in the
transaction's session only), and a mail whose Message-ID no article had then, nor any
article this transaction added since, is no duplicate without a query of its own. The
customers of the batch's senders are read the same way, once (`look_up_customers`):
nothing on the mail path writes customers, so what a transaction read at its start is
what a query per mail would read, but for a change someone commits meanwhile in the web
or CLI, which then counts as made after these mails. Every other answer is a query, as
it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlmodel import Session

from gateway.mail.addresses import address_key
from gateway.routing.context import CustomerInfo, FaqAnswerInfo, TicketInfo
from gateway.store.models import (
    Article,
    CustomerUser,
    Organisation,
    Queue,
    ReceivedMail,
    Staff,
    Ticket,
    TicketMessageId,
    TicketParticipant,
    table_of,
)
from gateway.store.models_faq import FaqMailAnswer
from gateway.tickets.ticket import NEW_ARTICLE_MESSAGE_IDS, storable

_ticket = table_of(Ticket)
_queue = table_of(Queue)
_message_id = table_of(TicketMessageId)
_customer = table_of(CustomerUser)
_organisation = table_of(Organisation)
_staff = table_of(Staff)
_article = table_of(Article)
_faq_answer = table_of(FaqMailAnswer)
_received = table_of(ReceivedMail)
_participant = table_of(TicketParticipant)

_TICKET_COLUMNS = (_ticket.c.id, _ticket.c.number, _ticket.c.state, _queue.c.key,
                   _ticket.c.customer_user_id, _ticket.c.contact_email, _organisation.c.key)
# the ticket with its queue and its customer's organisation (for `participants`)
_TICKET_JOIN = (_ticket.join(_queue, _queue.c.id == _ticket.c.queue_id)
                .outerjoin(_customer, _customer.c.id == _ticket.c.customer_user_id)
                .outerjoin(_organisation, _organisation.c.id == _customer.c.organisation_id))


# Built once: these run for every mail, and building a statement per call cost more than
# running it (bench/README.md, inbound).
_CUSTOMER = (select(_customer.c.id, _customer.c.username, _organisation.c.key,
                    _customer.c.language, _customer.c.name, _customer.c.email)
             .select_from(_customer.outerjoin(_organisation))
             .where(_customer.c.active.is_(True)).order_by(_customer.c.id))
_CUSTOMER_BY_KEY = _CUSTOMER.where(_customer.c.email_key == bindparam("key"))
_CUSTOMERS_BY_LOWER_KEY = _CUSTOMER.where(
    func.lower(_customer.c.email_key) == bindparam("key")).limit(2)
_CUSTOMERS_BY_KEYS = (select(_customer.c.email_key, *_CUSTOMER.selected_columns)
                      .select_from(_customer.outerjoin(_organisation))
                      .where(_customer.c.active.is_(True),
                             _customer.c.email_key.in_(bindparam("keys", expanding=True)))
                      .order_by(_customer.c.id))
_CUSTOMERS_BY_LOWER_KEYS = (
    select(func.lower(_customer.c.email_key), *_CUSTOMER.selected_columns)
    .select_from(_customer.outerjoin(_organisation))
    .where(_customer.c.active.is_(True),
           func.lower(_customer.c.email_key).in_(bindparam("keys", expanding=True)))
    .order_by(_customer.c.id))
_DUPLICATE = select(_article.c.id).where(_article.c.message_id == bindparam("message_id"),
                                         _article.c.body == bindparam("body")).limit(1)


_SEEN = "tgw_article_message_ids_seen"      # `Session.info` key of `look_up_message_ids`


@dataclass(frozen=True)
class _Seen:
    looked_up: frozenset[str]      # the Message-IDs asked for
    known: frozenset[str]          # those an article had


def look_up_message_ids(session: Session, message_ids: Sequence[str]) -> None:
    """Before a batch of mails is routed in this transaction: which of their Message-IDs
    any article has, in one query (see the module's docstring)."""
    wanted = sorted({storable(m) for m in message_ids if m})
    if not wanted:
        return
    known = session.execute(select(_article.c.message_id).distinct()
                            .where(_article.c.message_id.in_(wanted))).scalars()
    session.info[_SEEN] = _Seen(frozenset(wanted), frozenset(known))


_CUSTOMERS = "tgw_customers_by_key"         # `Session.info` key of `look_up_customers`


def look_up_customers(session: Session, addresses: Sequence[str]) -> None:
    """Before a batch of mails is routed in this transaction: the customers of their
    senders, as `customer_by_address` finds them, in one query (and one more for those
    without an exact match)."""
    keys = sorted({address_key(a) for a in addresses if a})
    if not keys:
        return
    found: dict[str, CustomerInfo | None] = {}
    for row in session.execute(_CUSTOMERS_BY_KEYS, {"keys": keys}):
        found.setdefault(row[0], _customer_info(row[1:]))      # the lowest id, as before
    inexact = {key.lower(): key for key in keys if key not in found}
    if inexact:
        matches: dict[str, list[Any]] = {}
        for row in session.execute(_CUSTOMERS_BY_LOWER_KEYS, {"keys": sorted(inexact)}):
            matches.setdefault(row[0], []).append(row[1:])
        for lower, key in inexact.items():
            rows = matches.get(lower, [])
            found[key] = _customer_info(rows[0]) if len(rows) == 1 else None  # unambiguous
    session.info[_CUSTOMERS] = found


def _customer_info(row: Sequence[Any]) -> CustomerInfo:
    return CustomerInfo(id=row[0], username=row[1], organisation=row[2] or "",
                        language=row[3], name=row[4] or "", email=row[5] or "")


def _ticket_info(row: Sequence[Any]) -> TicketInfo:
    return TicketInfo(id=row[0], number=row[1], state=row[2], queue=row[3],
                      customer_user_id=row[4], contact_key=address_key(row[5] or ""),
                      organisation=row[6] or "")


class DatabaseDirectory:
    def __init__(self, session: Session) -> None:
        self.session = session

    def _one_ticket(self, condition: object) -> TicketInfo | None:
        row = self.session.execute(
            select(*_TICKET_COLUMNS).select_from(_TICKET_JOIN)
            .where(condition)  # type: ignore[arg-type]
        ).first()
        return _ticket_info(row) if row else None

    def ticket_by_reply_token(self, token: str) -> TicketInfo | None:
        return self._one_ticket(_ticket.c.reply_token == token)

    def ticket_by_staff_token(self, token: str) -> TicketInfo | None:
        return self._one_ticket(_ticket.c.staff_token == token)

    def ticket_by_number(self, number: str) -> TicketInfo | None:
        return self._one_ticket(_ticket.c.number == number)

    def ticket_by_message_ids(self, ids: Sequence[str]) -> tuple[TicketInfo, str] | None:
        """The ticket of the first id (in the order given) that any ticket knows."""
        wanted = [storable(i) for i in dict.fromkeys(ids) if i][:100]
        if not wanted:
            return None
        rows = self.session.execute(
            select(_message_id.c.message_id, *_TICKET_COLUMNS)
            .select_from(_message_id.join(_TICKET_JOIN, _ticket.c.id == _message_id.c.ticket_id))
            .where(_message_id.c.message_id.in_(wanted))
        ).all()
        by_id = {row[0]: _ticket_info(row[1:]) for row in rows}
        for message_id in wanted:
            if message_id in by_id:
                return by_id[message_id], message_id
        return None

    def customer_by_address(self, address: str) -> CustomerInfo | None:
        """The active customer with this address (domain case-insensitive). When the local
        part's case differs too, a case-insensitive match is used if it is unambiguous."""
        if not address:
            return None
        key = address_key(address)
        looked_up = self.session.info.get(_CUSTOMERS)
        if looked_up is not None and key in looked_up:
            return looked_up[key]
        row = self.session.execute(_CUSTOMER_BY_KEY, {"key": key}).first()
        if row is None:
            rows = self.session.execute(_CUSTOMERS_BY_LOWER_KEY, {"key": key.lower()}).all()
            row = rows[0] if len(rows) == 1 else None
        return _customer_info(row) if row is not None else None

    def is_staff(self, address: str) -> bool:
        key = address_key(address).lower()
        return self.session.execute(
            select(_staff.c.id).where(func.lower(_staff.c.email_key) == key,
                                      _staff.c.active.is_(True))
        ).first() is not None

    def is_participant(self, ticket_id: int, address: str) -> bool:
        """A recorded participant of the ticket (`ticket_participant`): a Cc of its opening
        mail, a colleague who replied, or whom staff added with `#cc add`. Someone who was
        merely addressed by one of its mails is not one."""
        return self.session.execute(
            select(_participant.c.id).where(
                _participant.c.ticket_id == ticket_id,
                _participant.c.address_key == address_key(address).lower())).first() is not None

    def is_duplicate(self, message_id: str, body: str) -> bool:
        """The same Message-ID with the same text is already an article."""
        wanted = storable(message_id)
        seen = self.session.info.get(_SEEN)
        if seen is not None and wanted in seen.looked_up and wanted not in seen.known \
                and wanted not in self.session.info.get(NEW_ARTICLE_MESSAGE_IDS, ()):
            return False
        return self.session.execute(_DUPLICATE, {"message_id": storable(message_id),
                                                 "body": storable(body)}).first() is not None

    def faq_answer_by_message_ids(self, ids: Sequence[str]) -> FaqAnswerInfo | None:
        """Our FAQ answer among `ids` (the first one, in the order given), if any."""
        wanted = [storable(i) for i in dict.fromkeys(ids) if i][:100]
        if not wanted:
            return None
        rows = self.session.execute(
            select(_faq_answer.c.message_id, _faq_answer.c.received_mail_id,
                   _faq_answer.c.address_key, _received.c.subject)
            .join(_received, _received.c.id == _faq_answer.c.received_mail_id)
            .where(_faq_answer.c.message_id.in_(wanted))).all()
        by_id = {row[0]: FaqAnswerInfo(row[0], row[1], row[2], row[3] or "") for row in rows}
        return next((by_id[i] for i in wanted if i in by_id), None)

