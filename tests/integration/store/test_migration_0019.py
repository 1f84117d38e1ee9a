"""Migration 0019 on both databases: a queued mail may be a recipe (its bytes rendered by the
outbox). Going back below it keeps every rendered mail, and refuses while a mail is still
only a recipe, since the older release could not send it."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from gateway.store.migrate import alembic_config, upgrade

INSERT = text(
    "INSERT INTO outbound_mail (created, event, envelope_from, recipients, message_id, raw, "
    "recipe, status, attempts, next_attempt) VALUES ('2026-12-07 06:00:00', 'ack', "
    "'support@example.com', '[\"max@acme.example\"]', :message_id, :raw, :recipe, 'queued', "
    "0, '2026-12-07 06:00:00')")


def test_a_downgrade_keeps_rendered_mail_and_refuses_while_one_is_a_recipe(
        database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(INSERT, {"message_id": "<rendered@example.com>",
                                        "raw": b"Subject: sent\r\n\r\nHallo\r\n",
                                        "recipe": None})
            connection.execute(INSERT, {"message_id": "<recipe@example.com>", "raw": None,
                                        "recipe": '{"v":1}'})
        with pytest.raises(RuntimeError, match="1 queued mails are not rendered yet"):
            command.downgrade(alembic_config(database_url), "0018")
        with engine.begin() as connection:      # the outbox rendered it meanwhile
            connection.execute(text("UPDATE outbound_mail SET raw = :raw WHERE raw IS NULL"),
                               {"raw": b"Subject: rendered\r\n\r\nHallo\r\n"})
        command.downgrade(alembic_config(database_url), "0018")
        with engine.connect() as connection:
            kept = connection.execute(text(
                "SELECT message_id, raw FROM outbound_mail ORDER BY id")).all()
        assert [(m, bytes(r)) for m, r in kept] == [
            ("<rendered@example.com>", b"Subject: sent\r\n\r\nHallo\r\n"),
            ("<recipe@example.com>", b"Subject: rendered\r\n\r\nHallo\r\n")]
    finally:
        engine.dispose()
        upgrade(database_url)
