"""The working order of the staff overview (issue #16 item 4): overdue, then due, then the
oldest without a due time. Tickets get due times from the service levels (item 3); these
rows stand in for the ticket rows the overview reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from gateway.tickets.overview import in_working_order, next_due, overview_entry

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def row(number: str, age_hours: int, due_in_hours: int | None = None) -> SimpleNamespace:
    values = {"number": number, "title": f"Ticket {number}", "state": "open", "priority": 3,
              "queue_key": "servicedesk", "customer_name": "", "customer_username": "mmuster",
              "contact_email": "max@acme.example", "created": NOW - timedelta(hours=age_hours),
              "owner_name": "", "owner_email": "anna@example.com", "staff_token": "t" * 24}
    due = None if due_in_hours is None else NOW + timedelta(hours=due_in_hours)
    values |= {"first_response_due": due, "first_response_at": None, "solution_due": None}
    return SimpleNamespace(**values)


def test_without_due_times_the_oldest_comes_first() -> None:
    entries = [overview_entry(row(n, age), NOW) for n, age in [("2", 5), ("1", 50), ("3", 1)]]
    assert [e.number for e in in_working_order(entries)] == ["1", "2", "3"]
    first = in_working_order(entries)[0]
    assert (first.urgency, first.due, first.age) == ("none", None, timedelta(hours=50))
    assert (first.customer, first.assignee) == ("mmuster", "anna@example.com")


def test_overdue_then_due_soon_then_later_then_none() -> None:
    rows = [row("old", 90), row("later", 1, due_in_hours=72), row("soon", 2, due_in_hours=3),
            row("late", 3, due_in_hours=-1), row("later-still", 4, due_in_hours=80),
            row("very-late", 1, due_in_hours=-30)]
    ordered = in_working_order([overview_entry(r, NOW) for r in rows])
    assert [(e.number, e.urgency) for e in ordered] == [
        ("very-late", "overdue"), ("late", "overdue"), ("soon", "due-soon"),
        ("later", "due"), ("later-still", "due"), ("old", "none")]


def test_next_due_is_the_first_response_until_met_then_the_solution() -> None:
    assert next_due(row("1", 1)) is None
    assert next_due(row("1", 1, due_in_hours=2)) == NOW + timedelta(hours=2)
    met = SimpleNamespace(**{**vars(row("1", 1, due_in_hours=2)), "first_response_at": NOW,
                             "solution_due": NOW + timedelta(hours=9)})
    assert next_due(met) == NOW + timedelta(hours=9)
    paused = SimpleNamespace(**{**vars(row("1", 1, due_in_hours=2)), "state": "pending"})
    assert next_due(paused) is None
