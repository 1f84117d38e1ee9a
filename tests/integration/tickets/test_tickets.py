"""The ticket domain on both databases: create, append, state, priority, reopen, numbers."""

from __future__ import annotations

import multiprocessing
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select

from gateway.app import App
from gateway.errors import InvalidInput, NotFound
from gateway.store.models import Queue, TicketCounter, TicketMessageId, table_of
from gateway.tickets.numbers import NUMBER_PATTERN, Numbering
from gateway.tickets.queries import list_tickets, ticket_detail
from gateway.tickets.ticket import (
    NewArticle,
    NewAttachment,
    NewTicket,
    State,
    add_article,
    create_ticket,
    find_ticket,
    reopen,
    set_priority,
    set_state,
)
from tests.helpers import create_tickets_worker


def queue_id(app: App, key: str = "servicedesk") -> int:
    q = table_of(Queue)
    with app.db.read() as session:
        return int(session.execute(select(q.c.id).where(q.c.key == key)).scalar_one())


def mail_article(body: str = "Der Drucker druckt nicht.", message_id: str | None = None,
                 **kwargs: object) -> NewArticle:
    return NewArticle(direction="in", channel="mail", sender="customer", body=body,
                      subject="Drucker", from_address="max@acme.example",
                      message_id=message_id, **kwargs)  # type: ignore[arg-type]


def new_ticket(app: App, **kwargs: object) -> NewTicket:
    values: dict[str, object] = {"title": "Drucker im 2. OG", "queue_id": queue_id(app),
                                 "first_article": mail_article(message_id="<first@acme>")}
    values.update(kwargs)
    return NewTicket(**values)  # type: ignore[arg-type]


def test_create_ticket_with_article_answers_and_history(app: App) -> None:
    now = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)
    blob = app.blobs.put(b"%PDF-1.4 fake")
    with app.db.write() as session:
        ref = create_ticket(session, new_ticket(
            app, priority=4, guide_answers=(("system", "HP LaserJet"),),
            first_article=mail_article(message_id="<first@acme>", attachments=(
                NewAttachment("Bericht.pdf", "application/pdf", blob.sha256, blob.size),))),
            numbering=app.numbering, actor="mail", now=now)
    assert ref.number == "2026112710000001"
    with app.db.read() as session:
        detail = ticket_detail(session, ref.number)
    assert detail["title"] == "Drucker im 2. OG"
    assert (detail["state"], detail["priority"], detail["queue"]) == ("new", 4, "servicedesk")
    assert detail["guide_answers"] == {"system": "HP LaserJet"}
    [article] = detail["articles"]
    assert article["body"] == "Der Drucker druckt nicht."
    assert article["attachments"] == [{"filename": "Bericht.pdf", "content_type": "application/pdf",
                                       "size": 13, "sha256": blob.sha256, "inline": False,
                                       "content_id": None}]
    assert detail["history"] == [{"at": now.isoformat(), "actor": "mail", "field": "created",
                                  "old": None, "new": "new"}]


def test_numbers_follow_the_configured_time_zone(app: App) -> None:
    late_evening_utc = datetime(2026, 11, 27, 23, 30, tzinfo=UTC)
    berlin = Numbering("42", "Europe/Berlin")
    with app.db.write() as session:
        ref = create_ticket(session, new_ticket(app), numbering=berlin, actor="t",
                            now=late_evening_utc)
    assert ref.number == "2026112842000001"     # already the 28th in Berlin


def test_numbers_count_per_day_and_are_never_reused(app: App) -> None:
    day1 = datetime(2026, 11, 27, 10, tzinfo=UTC)
    numbers = []
    for when in (day1, day1, day1 + timedelta(days=1), day1):
        with app.db.write() as session:
            numbers.append(create_ticket(session, new_ticket(app, first_article=mail_article()),
                                         numbering=app.numbering, actor="t", now=when).number)
    with pytest.raises(RuntimeError), app.db.write() as session:   # rolled back: not used
        create_ticket(session, new_ticket(app, first_article=mail_article()),
                      numbering=app.numbering, actor="t", now=day1)
        raise RuntimeError
    with app.db.write() as session:
        numbers.append(create_ticket(session, new_ticket(app, first_article=mail_article()),
                                     numbering=app.numbering, actor="t", now=day1).number)
    assert numbers == ["2026112710000001", "2026112710000002", "2026112810000001",
                       "2026112710000003", "2026112710000004"]


def test_past_999999_tickets_a_day_the_number_gets_wider(app: App) -> None:
    """PostgreSQL spells the number in SQL (one statement makes the ticket): the same
    numbers as Python's, the first article's Message-ID remembered for threading."""
    day = datetime(2026, 11, 27, 10, tzinfo=UTC)
    with app.db.write() as session:
        session.execute(insert(table_of(TicketCounter)).values(day="20261127", value=999_998))
    refs = []
    for n in range(2):
        with app.db.write() as session:
            refs.append(create_ticket(session, new_ticket(app, first_article=mail_article(
                message_id=f"<wide{n}@acme>")), numbering=app.numbering, actor="t", now=day))
    assert [r.number for r in refs] == ["2026112710999999", "20261127101000000"]
    remembered = table_of(TicketMessageId)
    with app.db.read() as session:
        threads = dict(session.execute(select(remembered.c.message_id, remembered.c.ticket_id)
                                       .where(remembered.c.message_id.like("<wide%"))).all())
        assert threads == {"<wide0@acme>": refs[0].id, "<wide1@acme>": refs[1].id}
        assert sorted(t["number"] for t in list_tickets(session)) == sorted(r.number for r in refs)


def test_article_state_priority_and_reopen_with_history(app: App) -> None:
    with app.db.write() as session:
        ref = create_ticket(session, new_ticket(app), numbering=app.numbering, actor="mail")
    with app.db.write() as session:
        add_article(session, ref.id, mail_article("Noch etwas.", message_id="<second@acme>"))
        assert set_state(session, ref.id, State.OPEN, actor="staff:anna.agent@example.com")
        assert not set_state(session, ref.id, State.OPEN, actor="cli")        # no change
        assert set_priority(session, ref.id, 5, actor="cli")
        assert not reopen(session, ref.id, actor="mail")                     # not closed
        assert set_state(session, ref.id, State.CLOSED, actor="cli")
    with app.db.read() as session:
        closed = find_ticket(session, ref.number)
        assert closed.state == "closed" and closed.closed is not None
    with app.db.write() as session:
        assert reopen(session, ref.id, actor="mail")
    with app.db.read() as session:
        detail = ticket_detail(session, ref.number)
        ids = session.execute(select(table_of(TicketMessageId).c.message_id)
                              .order_by("message_id")).scalars().all()
    assert detail["state"] == "open" and detail["closed"] is None
    assert [a["message_id"] for a in detail["articles"]] == ["<first@acme>", "<second@acme>"]
    assert ids == ["<first@acme>", "<second@acme>"]      # both thread to this ticket
    assert [(h["actor"], h["field"], h["old"], h["new"]) for h in detail["history"]] == [
        ("mail", "created", None, "new"),
        ("staff:anna.agent@example.com", "state", "new", "open"),
        ("cli", "priority", "3", "5"),
        ("cli", "state", "open", "closed"),
        ("mail", "state", "closed", "open"),
    ]


def test_bad_changes_are_refused_and_change_nothing(app: App) -> None:
    with app.db.write() as session:
        ref = create_ticket(session, new_ticket(app), numbering=app.numbering, actor="t")
    with pytest.raises(InvalidInput, match="between 1 and 5"), app.db.write() as session:
        set_priority(session, ref.id, 9, actor="cli")
    with pytest.raises(InvalidInput, match="needs a title"), app.db.write() as session:
        create_ticket(session, new_ticket(app, title="  "), numbering=app.numbering, actor="t")
    with pytest.raises(NotFound, match="no ticket with number '2026010110999999'"), \
            app.db.read() as session:
        find_ticket(session, "2026010110999999")
    with app.db.read() as session:
        assert [t["number"] for t in list_tickets(session)] == [ref.number]
        assert find_ticket(session, ref.number).priority == 3


def test_listing_filters(app: App) -> None:
    with app.db.write() as session:
        refs = [create_ticket(session, new_ticket(app, title=f"T{i}",
                                                  first_article=mail_article()),
                              numbering=app.numbering, actor="t") for i in range(3)]
        set_state(session, refs[0].id, State.CLOSED, actor="t")
        set_state(session, refs[1].id, State.PENDING, actor="t")
    with app.db.read() as session:
        def titles(**kw: object) -> list[str]:
            return [t["title"] for t in list_tickets(session, **kw)]  # type: ignore[arg-type]
        assert titles() == ["T2", "T1", "T0"]
        assert titles(state="open") == ["T2", "T1"]          # open = every state but closed
        assert titles(state="closed") == ["T0"]
        assert titles(queue="changes") == []


def test_200_tickets_from_8_parallel_workers_get_distinct_numbers(app: App) -> None:
    """Eight processes (own connections, own engines) create 25 tickets each at once."""
    qid = queue_id(app)
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 3.0          # after every worker has imported the code
    with context.Pool(8) as pool:
        results = pool.starmap(create_tickets_worker,
                               [(app.db.url, qid, 25, start_at, w) for w in range(8)])
    numbers = [n for worker in results for n in worker]
    assert len(numbers) == 200
    assert len(set(numbers)) == 200
    assert all(NUMBER_PATTERN.match(n) and n[8:10] == "10" for n in numbers)
    with app.db.read() as session:
        stored = [t["number"] for t in list_tickets(session, limit=1000)]
    assert sorted(stored) == sorted(numbers)
    # one day's counter: the numbers are exactly 1..200 (none lost, none twice)
    by_day: dict[str, list[int]] = {}
    for n in numbers:
        by_day.setdefault(n[:8], []).append(int(n[10:]))
    for counters in by_day.values():
        assert sorted(counters) == list(range(1, len(counters) + 1))
