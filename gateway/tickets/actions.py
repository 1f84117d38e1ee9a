"""Ticket changes together with the mails they cause, for every channel (staff mail
commands, the CLI, the web view, jobs): one function per change, in the caller's
transaction, so a change and its status mail commit together."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlmodel import Session

from gateway.errors import InvalidInput
from gateway.mail.addresses import address_key
from gateway.outbound import answers
from gateway.outbound.answers import Answering
from gateway.store.models import Staff, Ticket, table_of
from gateway.tickets.ticket import State, record_change, set_state

_ticket = table_of(Ticket)
_staff = table_of(Staff)


def change_state(session: Session, answering: Answering, ticket_id: int, state: State, *,
                 actor: str) -> bool:
    """Set the state; the customer gets a status mail when the state is one the config
    announces. False when the ticket had that state already."""
    old = set_state(session, ticket_id, state, actor=actor)
    if old is None:
        return False
    answers.state_changed(session, answering, ticket_id, old, state.value)
    return True


def assign(session: Session, ticket_id: int, who: str, *, actor: str) -> str:
    """Make a staff member (address or name, case-insensitive) the ticket's owner; their
    address. `InvalidInput` when nobody active matches."""
    wanted = who.strip().lower()
    rows = session.execute(select(_staff.c.id, _staff.c.email, _staff.c.name)
                           .where(_staff.c.active.is_(True))).all()
    match = [r for r in rows if address_key(r.email).lower() == address_key(wanted).lower()
             or r.name.lower() == wanted]
    if len(match) != 1:
        raise InvalidInput(f"no single staff member {who!r}" + (
            "" if not match else f" (matches {', '.join(r.email for r in match)})"))
    current = session.execute(select(_ticket.c.owner_staff_id)
                              .where(_ticket.c.id == ticket_id)).scalar_one()
    if current != match[0].id:
        session.execute(update(_ticket).where(_ticket.c.id == ticket_id)
                        .values(owner_staff_id=match[0].id))
        record_change(session, ticket_id, actor, "owner", None, match[0].email)
    return str(match[0].email)
