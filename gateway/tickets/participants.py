"""A ticket's participants: who besides its customer may write to it and gets its answers.

In: a `Session` in the caller's transaction, a ticket id, an address and who adds it. Out:
rows in `ticket_participant` and a `participant` entry in the ticket's history for every
change (actor = who added or removed whom).

Guarantees (docs/admin.md, "Participants"):
- never one of our own addresses (a template, route, queue or FAQ address, any address in
  `[inbound] domains`, `[outbound] from`), never a configured staff address, never a
  role or automatic mailbox (postmaster, MAILER-DAEMON, noreply, bounces, ...): a
  participant can never act as staff, and we never write to software that reads nothing;
- never the ticket's own customer, at most `MAX_PARTICIPANTS` per ticket, each address once
  (compared by `address_key`, RFC 5321 §2.4);
- `[[queue]] participants = "none"` switches all of it off for the queue's tickets.
Refusals raise `InvalidInput` with the reason in words (staff read it in `command-failed`);
`add_from_cc` skips refused addresses instead and says which, for the processing log.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr

from sqlalchemy import delete, func, insert, select
from sqlmodel import Session

from gateway.classify.loop_rules import NO_REPLY_LOCAL
from gateway.config.settings import Settings
from gateway.errors import InvalidInput
from gateway.mail.addresses import address_key
from gateway.routing.addressbook import AddressBook
from gateway.store.models import Ticket, TicketParticipant, table_of, utcnow
from gateway.tickets.ticket import fitted, record_change

MAX_PARTICIPANTS = 10
LEVELS = ("none", "cc", "organisation")     # cumulative: each includes the one before

_participant = table_of(TicketParticipant)
_ticket = table_of(Ticket)

# mailboxes of a mail system or a role nobody answers as a person (RFC 2142 §4-5)
_ROLE_LOCAL = re.compile(r"^(?:postmaster|hostmaster|abuse|mailer[-_.]?daemon|root|nobody|"
                         r"daemon|list[-_.]?(?:owner|request)|.+-(?:owner|request|bounces))$",
                         re.I)
_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")


@dataclass(frozen=True)
class Participant:
    address: str
    name: str
    source: str            # cc | organisation | staff
    added_by: str
    added: datetime


def queue_level(settings: Settings, queue: str) -> str:
    """The queue's `participants` setting ("cc" for a queue no longer configured)."""
    return next((q.participants for q in settings.queue if q.id == queue), "cc")


def refusal(settings: Settings, addressbook: AddressBook, address: str) -> str | None:
    """Why `address` can never be a participant, or None."""
    if not _ADDRESS.match(address):
        return f"{address!r} is not a mail address"
    local, _, domain = address.rpartition("@")
    key = address_key(address).lower()
    if (addressbook.is_ours(address) or addressbook.lookup(address) is not None
            or domain.lower() in addressbook.domains
            or key == address_key(parseaddr(settings.outbound.from_)[1]).lower()):
        return f"{address} is one of our own addresses"
    if any(address_key(s.email).lower() == key for s in settings.staff) or any(
            address_key(a).lower() == key for q in settings.queue for a in q.staff):
        return f"{address} is a staff address: staff work on the ticket by its staff address"
    if NO_REPLY_LOCAL.match(local) or _ROLE_LOCAL.match(local.partition("+")[0]):
        return f"{address} is a role or automatic mailbox that reads no answers"
    return None


def participants_of(session: Session, ticket_id: int) -> list[Participant]:
    """The ticket's participants, in the order they were added."""
    return [Participant(r.address, r.name, r.source, r.added_by, r.added)
            for r in session.execute(select(_participant).where(
                _participant.c.ticket_id == ticket_id).order_by(_participant.c.id))]


def is_participant(session: Session, ticket_id: int, address: str) -> bool:
    return session.execute(select(_participant.c.id).where(
        _participant.c.ticket_id == ticket_id,
        _participant.c.address_key == address_key(address).lower())).first() is not None


def add_participant(session: Session, settings: Settings, addressbook: AddressBook,
                    ticket_id: int, address: str, *, name: str = "", source: str, actor: str,
                    customer_address: str = "", now: datetime | None = None) -> bool:
    """Add one participant (with a history entry); False when they are one already.
    `InvalidInput` when the address is refused or the ticket has its maximum."""
    address = address.strip()
    reason = refusal(settings, addressbook, address)
    if reason is None and customer_address and \
            address_key(address).lower() == address_key(customer_address).lower():
        reason = f"{address} is the ticket's customer"
    if reason:
        raise InvalidInput(reason)
    if is_participant(session, ticket_id, address):
        return False
    count = session.execute(select(func.count()).select_from(_participant).where(
        _participant.c.ticket_id == ticket_id)).scalar_one()
    if count >= MAX_PARTICIPANTS:
        raise InvalidInput(f"the ticket has {MAX_PARTICIPANTS} participants already, the "
                           "most it may have")
    now = now or utcnow()
    session.execute(insert(_participant).values(
        ticket_id=ticket_id, address=fitted(address, 320),
        address_key=fitted(address_key(address).lower(), 320), name=fitted(name, 200),
        source=source, added_by=fitted(actor, 400), added=now))
    record_change(session, ticket_id, actor, "participant", None, address, now)
    return True


def remove_participant(session: Session, ticket_id: int, address: str, *, actor: str,
                       now: datetime | None = None) -> None:
    """Remove one participant (with a history entry); `InvalidInput` if not one."""
    removed = session.execute(delete(_participant).where(
        _participant.c.ticket_id == ticket_id,
        _participant.c.address_key == address_key(address.strip()).lower()))
    if not getattr(removed, "rowcount", 0):
        raise InvalidInput(f"{address.strip()} is not a participant of this ticket")
    record_change(session, ticket_id, actor, "participant", address.strip(), None, now)


def add_from_cc(session: Session, settings: Settings, addressbook: AddressBook, ticket_id: int,
                cc: Sequence[tuple[str, str]], *, queue: str, actor: str,
                customer_address: str) -> str:
    """The Cc (name, address) pairs of a ticket's opening mail become its participants when
    the queue allows it; what was done, for the processing log ("" if nothing)."""
    if queue_level(settings, queue) == "none" or not cc:
        return ""
    added, skipped = [], []
    for name, address in cc:
        try:
            if add_participant(session, settings, addressbook, ticket_id, address, name=name,
                               source="cc", actor=actor, customer_address=customer_address):
                added.append(address)
        except InvalidInput as exc:
            skipped.append(str(exc))
    parts = ([f"participants from Cc: {', '.join(added)}"] if added else []) + \
        [f"not a participant: {s}" for s in skipped]
    return "; ".join(parts)
