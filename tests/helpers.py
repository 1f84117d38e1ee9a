"""Helpers for tests that need separate processes (spawned workers import this module)."""

from __future__ import annotations

import time

from gateway.store.db import Database
from gateway.tickets.numbers import Numbering
from gateway.tickets.ticket import NewArticle, NewTicket, create_ticket


def create_tickets_worker(url: str, queue_id: int, count: int, start_at: float,
                          worker: int) -> list[str]:
    """Create `count` tickets, each in its own transaction, starting at `start_at` so all
    workers hit the database at the same moment. Returns the numbers handed out."""
    database = Database(url)
    numbering = Numbering("10", "UTC")
    numbers = []
    time.sleep(max(0.0, start_at - time.time()))
    try:
        for i in range(count):
            with database.write() as session:
                ref = create_ticket(session, NewTicket(
                    title=f"worker {worker} ticket {i}", queue_id=queue_id,
                    first_article=NewArticle(direction="in", channel="mail", sender="customer",
                                             body="load", message_id=f"<w{worker}.{i}@test>")),
                    numbering=numbering, actor="test")
            numbers.append(ref.number)
    finally:
        database.dispose()
    return numbers
