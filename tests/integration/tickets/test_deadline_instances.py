"""Two instances run the deadline check at the same moment on PostgreSQL: each reminder goes
out once. The first check holds its transaction open until the second one waits for the
ticket's row lock, so the race the lock guards against really happens in this test."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text

from gateway.app import App, build_app, prepare_database
from gateway.store.models import OutboundMail, TicketHistory, table_of
from gateway.tickets.deadlines import DeadlineAction, check_service_levels
from gateway.tickets.service_levels import start_clock
from gateway.tickets.ticket import NewArticle, NewTicket, create_ticket
from tests.conftest import make_settings

BERLIN = ZoneInfo("Europe/Berlin")
QUEUE = {"id": "servicedesk", "from": "Service Desk <support@support.example.com>",
         "staff": ["anna.agent@example.com"], "hours": "mon-fri 08:00-17:00"}
TEMPLATE = {"id": "incident", "group": "incident", "queue": "servicedesk",
            "name": {"de": "Störung"}, "addresses": ["incident@support.example.com"],
            "sla": {"first_response": "4h", "solution": "16h"}}


@pytest.fixture
def sla_app(database_url: str, tmp_path: Path) -> Iterator[App]:
    built = build_app(make_settings(
        database_url, tmp_path / "data", tickets={"timezone": "Europe/Berlin"}, queue=[QUEUE],
        staff=[{"email": "anna.agent@example.com", "name": "Anna Agent"}],
        template=[TEMPLATE]))
    prepare_database(built, migrate=False)
    yield built
    built.close()


def _ticket(app: App) -> int:
    ids = app.stages.configured_ids
    with app.db.write() as session:
        ref = create_ticket(session, NewTicket(
            title="Server down", queue_id=ids.queue(session, "servicedesk"),
            template_id=ids.template(session, "incident"),
            contact_email="max.mustermann@acme.example",
            first_article=NewArticle(direction="in", channel="mail", sender="customer",
                                     body="Nichts geht.")),
            numbering=app.numbering, actor="test",
            now=datetime(2026, 11, 30, 9, 0, tzinfo=BERLIN))       # a Monday: due 13:00
        start_clock(session, app.settings, ref.id)
    return ref.id


def _waiting_for_a_lock(app: App) -> bool:
    with app.db.engine.connect() as connection:
        return bool(connection.execute(text(
            "select count(*) from pg_stat_activity where wait_event_type = 'Lock' "
            "and datname = current_database()")).scalar())


@pytest.mark.backends("postgresql")
def test_two_instances_checking_at_once_send_each_reminder_once(sla_app: App) -> None:
    ticket_id = _ticket(sla_app)
    moment = datetime(2026, 11, 30, 12, 30, tzinfo=BERLIN)           # within warn_before
    first: list[DeadlineAction] = []
    second: list[DeadlineAction] = []
    first_decided = threading.Event()
    errors: list[BaseException] = []

    def first_instance() -> None:
        try:
            with sla_app.db.write() as session:
                first.extend(check_service_levels(session, sla_app.answering, moment))
                first_decided.set()
                deadline = time.monotonic() + 30
                while not _waiting_for_a_lock(sla_app):      # the second one is blocked
                    if time.monotonic() > deadline:
                        raise AssertionError("the second check never waited for the lock")
                    time.sleep(0.05)
        except BaseException as exc:          # surfaced in the test's thread below
            errors.append(exc)
            first_decided.set()

    thread = threading.Thread(target=first_instance)
    thread.start()
    assert first_decided.wait(30)
    with sla_app.db.write() as session:
        second.extend(check_service_levels(session, sla_app.answering, moment))
    thread.join(30)
    assert errors == []
    assert [(a.action, a.target) for a in first] == [("sla-reminder", "first-response")]
    assert second == []
    history = table_of(TicketHistory)
    outbound = table_of(OutboundMail)
    with sla_app.db.read() as session:
        recorded: Any = session.execute(
            select(func.count()).select_from(history)
            .where(history.c.ticket_id == ticket_id, history.c.field == "sla-reminder")
        ).scalar_one()
        mails = session.execute(select(func.count()).select_from(outbound)
                                .where(outbound.c.event == "sla-reminder")).scalar_one()
    assert (recorded, mails) == (1, 1)
