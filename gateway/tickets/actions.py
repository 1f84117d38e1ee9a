"""Ticket changes together with the mails they cause, for every channel (staff mail
commands, the CLI, the web view, jobs): one function per change, in the caller's
transaction, so a change and its status mail commit together."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlmodel import Session

from gateway.config.settings import Settings
from gateway.errors import InvalidInput
from gateway.mail.addresses import address_key
from gateway.outbound import answers
from gateway.outbound.answers import Answering
from gateway.store.models import Staff, Ticket, table_of, utcnow
from gateway.tickets import service_levels
from gateway.tickets.ticket import State, record_change, set_priority, set_state

_ticket = table_of(Ticket)
_staff = table_of(Staff)


def change_state(session: Session, answering: Answering, ticket_id: int, state: State, *,
                 actor: str, now: datetime | None = None, announce: bool = True) -> bool:
    """Set the state; the customer gets a status mail when the state is one the config
    announces (and `announce`: a caller that sends its own mail says no). The service-level
    clock stops or starts with it. False when the ticket had that state already."""
    now = now or utcnow()
    old = set_state(session, ticket_id, state, actor=actor, now=now)
    if old is None:
        return False
    service_levels.note_state_change(session, answering.settings, ticket_id, old, state.value,
                                     now)
    if announce:
        answers.state_changed(session, answering, ticket_id, old, state.value)
    return True


def change_priority(session: Session, settings: Settings, ticket_id: int, priority: int, *,
                    actor: str) -> bool:
    """Set the priority; the due times follow the new priority's targets. False when
    unchanged."""
    if not set_priority(session, ticket_id, priority, actor=actor):
        return False
    service_levels.recompute_due(session, settings, ticket_id)
    return True


def end_customer_wait(session: Session, answering: Answering, ticket_id: int, *,
                      actor: str) -> bool:
    """The customer answered a `pending` ticket: it is `open` again (without a status mail:
    they know they wrote). False for a ticket in any other state."""
    return _open_quietly_from(session, answering, ticket_id, State.PENDING, actor=actor)


def start_work(session: Session, answering: Answering, ticket_id: int, *, actor: str) -> bool:
    """Staff answered the customer: a `new` ticket is `open` now (as in OTRS and Zammad),
    without a status mail (the customer has the answer). False for a ticket in any other
    state (a `#state` of the same mail, say, is left as it is)."""
    return _open_quietly_from(session, answering, ticket_id, State.NEW, actor=actor)


def _open_quietly_from(session: Session, answering: Answering, ticket_id: int, state: State,
                       *, actor: str) -> bool:
    """`open` without a status mail, only when the ticket is in `state` now."""
    current = session.execute(select(_ticket.c.state).where(_ticket.c.id == ticket_id)
                              ).scalar_one()
    if current != state.value:
        return False
    return change_state(session, answering, ticket_id, State.OPEN, actor=actor, announce=False)


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
