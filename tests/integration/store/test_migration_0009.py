"""Migration 0009 on both databases: tickets that existed before it get a staff token of
their own (`secrets`, as new tickets do), so their staff notices carry a staff address."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from gateway.store.migrate import alembic_config, upgrade


def test_existing_tickets_get_distinct_staff_tokens(database_url: str) -> None:
    command.downgrade(alembic_config(database_url), "0008")
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            queue = connection.execute(text(
                "INSERT INTO queue (key, name, from_address, language, active) "
                "VALUES ('q', 'Q', 'support@support.example.com', 'de', true) RETURNING id"
            )).scalar_one()
            for number in ("2026010110000001", "2026010110000002"):
                connection.execute(text(
                    "INSERT INTO ticket (number, title, state, priority, queue_id, "
                    "contact_email, reply_token, created, updated) VALUES (:n, 'old', 'open', "
                    "3, :q, 'max@acme.example', :t, '2026-01-01 10:00:00', "
                    "'2026-01-01 10:00:00')"), {"n": number, "q": queue, "t": f"r{number}"})
        upgrade(database_url)
        with engine.connect() as connection:
            tokens = connection.execute(text(
                "SELECT staff_token, reply_token FROM ticket ORDER BY id")).all()
        assert len(tokens) == 2 and len({staff for staff, _ in tokens}) == 2
        for staff, reply in tokens:
            assert staff and len(staff) == 24 and staff != reply    # token_urlsafe(18)
        try:
            with engine.begin() as connection:
                connection.execute(text("UPDATE ticket SET staff_token = :t"),
                                   {"t": tokens[0][0]})
            raise AssertionError("two tickets with one staff token")
        except IntegrityError:
            pass                                                   # unique, as in the model
    finally:
        upgrade(database_url)
        engine.dispose()
