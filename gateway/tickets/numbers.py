"""Ticket numbers: `YYYYMMDD` + two-digit system id + a per-day counter (KIX/OTRS style),
e.g. `2026112710000017`.

Guarantee: unique and never reused, on SQLite and PostgreSQL, with any number of writers.
The counter is one row per day, bumped with a single atomic
`INSERT … ON CONFLICT (day) DO UPDATE SET value = value + 1 RETURNING value` inside the
transaction that inserts the ticket: a rolled-back ticket rolls back its number too, so a
number is only ever seen on a committed ticket. On PostgreSQL the row lock serialises
concurrent creators for the rest of their (short) transaction; on SQLite the write
transaction (BEGIN IMMEDIATE) already does. Past 999,999 tickets in a day the counter simply
gets wider, which keeps numbers unique because the date and system id have a fixed width.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam
from sqlmodel import Session

from gateway.store.models import TicketCounter, table_of
from gateway.store.upsert import upsert_for

NUMBER_PATTERN = re.compile(r"^(\d{8})(\d{2})(\d{6,})$")


@dataclass(frozen=True)
class Numbering:
    system_id: str        # two digits
    timezone: str         # the zone whose calendar date starts the number


_BUMP_COUNTER: dict[str, Any] = {}   # the statement per dialect, built on first use


def next_ticket_number(session: Session, numbering: Numbering, now: datetime) -> str:
    """Allocate the next number for `now`'s date; call inside the ticket's transaction."""
    day = now.astimezone(ZoneInfo(numbering.timezone)).strftime("%Y%m%d")
    dialect = session.get_bind().dialect.name
    statement = _BUMP_COUNTER.get(dialect)
    if statement is None:
        table = table_of(TicketCounter)
        statement = _BUMP_COUNTER[dialect] = (
            upsert_for(session)(table)
            .values(day=bindparam("day"), value=1)
            .on_conflict_do_update(index_elements=["day"], set_={"value": table.c.value + 1})
            .returning(table.c.value)
        )
    value = session.execute(statement, {"day": day}).scalar_one()
    return f"{day}{numbering.system_id}{value:06d}"


def is_ticket_number(text: str) -> bool:
    return NUMBER_PATTERN.match(text) is not None
