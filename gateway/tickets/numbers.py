"""Ticket numbers: `YYYYMMDD` + two-digit system id + a per-day counter (KIX/OTRS style),
e.g. `2026112710000017`.

Guarantee: unique and never reused, on SQLite and PostgreSQL, with any number of writers.
The counter is one row per day, bumped with a single atomic
`INSERT … ON CONFLICT (day) DO UPDATE SET value = value + 1 RETURNING value` inside the
transaction that inserts the ticket: a rolled-back ticket rolls back its number too, so a
number is only ever seen on a committed ticket. On PostgreSQL `tickets/ticket.py` runs that
upsert inside the ticket's own INSERT (a data-modifying CTE, `counter_cte`), the number
spelt in SQL by `number_in_sql` exactly as `next_ticket_number` spells it. On
PostgreSQL the row lock serialises concurrent creators for the rest of their (short)
transaction; on SQLite the write transaction (BEGIN IMMEDIATE) already does. Past 999,999
tickets in a day the counter simply gets wider, which keeps numbers unique because the
date and system id have a fixed width.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import CTE, ColumnElement, Text, bindparam, case, cast, func
from sqlalchemy.dialects import postgresql
from sqlmodel import Session

from gateway.store.models import TicketCounter, table_of
from gateway.store.upsert import upsert_for

NUMBER_PATTERN = re.compile(r"^(\d{8})(\d{2})(\d{6,})$")


@dataclass(frozen=True)
class Numbering:
    system_id: str        # two digits
    timezone: str         # the zone whose calendar date starts the number


_BUMP_COUNTER: dict[str, Any] = {}   # the statement per dialect, built on first use


def day_of(numbering: Numbering, now: datetime) -> str:
    """The counter's day for `now` (`YYYYMMDD` in the numbering's zone)."""
    return now.astimezone(ZoneInfo(numbering.timezone)).strftime("%Y%m%d")


def next_ticket_number(session: Session, numbering: Numbering, now: datetime) -> str:
    """Allocate the next number for `now`'s date; call inside the ticket's transaction."""
    day = day_of(numbering, now)
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


def counter_cte() -> CTE:
    """PostgreSQL: the day's counter bumped (bind parameter `day`), as a CTE with its new
    `value`, for a statement that inserts the ticket too."""
    table = table_of(TicketCounter)
    return (postgresql.insert(table).values(day=bindparam("day"), value=1)
            .on_conflict_do_update(index_elements=["day"], set_={"value": table.c.value + 1})
            .returning(table.c.value).cte("bumped_counter"))


def number_in_sql(counter: CTE) -> ColumnElement[str]:
    """The number `next_ticket_number` makes, spelt in SQL: bind parameter `prefix` (the day
    and the system id) and the counter's value, at least six digits wide."""
    value = cast(counter.c.value, Text)
    return bindparam("prefix", type_=Text) + case(
        (counter.c.value < 1_000_000, func.lpad(value, 6, "0")), else_=value)


def is_ticket_number(text: str) -> bool:
    return NUMBER_PATTERN.match(text) is not None
