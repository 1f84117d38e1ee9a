"""`ticketgw leases` and `leases release` on SQLite and PostgreSQL: the listing (table and
`--json`), releasing stale leases and named ones, and the errors for wrong input."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update

from gateway.app import App
from gateway.inbound.intake import Envelope, Incoming, accept_many
from gateway.inbound.worker import lease_batch
from gateway.outbound.mail import OutgoingMail
from gateway.outbound.outbox import enqueue, lease_due
from gateway.store.leases import holder_id
from gateway.store.models import ReceivedMail, table_of, utcnow
from tests.conftest import write_config
from tests.integration.smtp_helpers import customer_mail

_received = table_of(ReceivedMail)


def leased_mail(app: App) -> tuple[int, int, int]:
    """A received mail whose lease ended without a result (its instance died), a held
    outbound lease and a queued outbound mail nobody leased."""
    [received] = accept_many(app.db, [Incoming(bytes(customer_mail("Printer")), Envelope(
        "smtp", "max@acme.example", ("incident@support.example.com",)))], blobs=app.blobs)
    assert lease_batch(app.db) == [received]
    with app.db.write() as session:                # ... and its instance died 25 s ago
        session.execute(update(_received).values(next_attempt=utcnow() - timedelta(seconds=5)))
    with app.db.write() as session:
        held, free = (enqueue(session, OutgoingMail(
            event="ack", envelope_from="support@support.example.com",
            recipients=("max@acme.example",), message_id=f"<cli.{n}@support.example.com>",
            raw=b"Subject: x\r\n\r\nx\r\n", ticket_id=None)) for n in range(2))
    assert [m.id for m in lease_due(app.db, mail_ids=[held])] == [held]
    return received, held, free


def test_leases_are_listed_and_stale_ones_released(app: App, database_url: str,
                                                  tmp_path: Path, run_cli: Any) -> None:
    config = str(write_config(tmp_path / "ticketgw.toml", database_url))
    received, held, _ = leased_mail(app)
    listed = json.loads(run_cli("--config", config, "leases", "--json").stdout)
    assert [(r["queue"], r["id"], r["holder"], r["attempts"], r["stale"]) for r in listed] == [
        ("inbound", received, holder_id(), 1, True), ("outbound", held, holder_id(), 1, False)]
    table = run_cli("--config", config, "leases").stdout.splitlines()
    assert table[0].split() == ["QUEUE", "ID", "HOLDER", "ATTEMPTS", "LEASE_ENDS", "STATE"]
    assert table[1].endswith("ended, no result") and table[2].endswith("held")
    stale = json.loads(run_cli("--config", config, "leases", "--stale", "--json").stdout)
    assert [r["id"] for r in stale] == [received]

    released = run_cli("--config", config, "leases", "release", "--stale")
    assert released.exit_code == 0
    assert released.stderr == f"released 1 lease(s): inbound {received}\n"
    assert [r["id"] for r in json.loads(
        run_cli("--config", config, "leases", "--json").stdout)] == [held]
    released = run_cli("--config", config, "leases", "release", "--queue", "outbound",
                       str(held))
    assert released.stderr == f"released 1 lease(s): outbound {held}\n"
    assert run_cli("--config", config, "leases").stdout == "(no leases)\n"
    assert sorted(m.id for m in lease_due(app.db)) == [held, held + 1]   # due at once


def test_wrong_input_changes_nothing(app: App, database_url: str, tmp_path: Path,
                                     run_cli: Any) -> None:
    config = str(write_config(tmp_path / "ticketgw.toml", database_url))
    received, held, free = leased_mail(app)
    for args, message in [
            ((), "give --stale or IDs with --queue"),
            (("--stale", "--queue", "inbound", str(received)),
             "give --stale or IDs with --queue"),
            ((str(received),), "IDs need --queue inbound or --queue outbound (both number "
                               "their mail from 1)"),
            (("--queue", "outbound", str(held), str(free)),
             f"not leased outbound mail: {free} (nothing was released)")]:
        result = run_cli("--config", config, "leases", "release", *args)
        assert (result.exit_code, result.stderr) == (1, f"error: {message}\n"), args
    assert len(json.loads(run_cli("--config", config, "leases", "--json").stdout)) == 2
