"""The directory's answers for a batch, looked up once (inbound/directory.py), are those it
gives mail by mail, on both databases."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from gateway.app import App
from gateway.inbound.directory import DatabaseDirectory, look_up_customers
from gateway.tickets.customers import NewCustomer, add_customer

SENDERS = ["max@acme.example", "ANNA@acme.example", "bernd@acme.example",
           "nobody@acme.example", "max@ACME.example", "Max@acme.example", ""]


def test_customers_looked_up_for_a_batch_are_those_found_one_by_one(
        app: App, customer: None) -> None:
    with app.db.write() as session:
        add_customer(session, NewCustomer("anna", "anna@acme.example", "Anna", "acme"))
        add_customer(session, NewCustomer("bernd1", "Bernd@acme.example", "Bernd"))
        add_customer(session, NewCustomer("bernd2", "BERND@acme.example", "Bernd"))
    with app.db.read() as session:
        one_by_one = [DatabaseDirectory(session).customer_by_address(a) for a in SENDERS]
    assert [c.username if c else None for c in one_by_one] == [
        "mmuster", "anna", None, None, "mmuster", "mmuster", None]   # bernd: ambiguous
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(app.db.engine, "before_cursor_execute", count)
    try:
        with app.db.read() as session:
            look_up_customers(session, SENDERS)
            looked_up = len(statements)
            batched = [DatabaseDirectory(session).customer_by_address(a) for a in SENDERS]
    finally:
        event.remove(app.db.engine, "before_cursor_execute", count)
    assert batched == one_by_one
    assert len(statements) == looked_up     # no query of its own for any of them
