"""Outbox commands: what we sent or could not send, and sending failed mail again.

`outbox list --json` gives `id, created, event, ticket, message_id, recipients, status,
attempts, next_attempt, last_error, sent` per mail, newest first.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import click
from sqlalchemy import select

from gateway.cli.context import CliContext, pass_context
from gateway.cli.output import echo_json, echo_table, json_object_option, json_option
from gateway.errors import InvalidInput, NotFound
from gateway.store.models import OutboundMail, Ticket, table_of

_outbound = table_of(OutboundMail)
_ticket = table_of(Ticket)
_COLUMNS = ["id", "created", "event", "ticket", "status", "attempts", "recipients",
            "last_error"]
_FIELDS = (_outbound.c.id, _outbound.c.created, _outbound.c.event, _outbound.c.message_id,
           _outbound.c.recipients, _outbound.c.status, _outbound.c.attempts,
           _outbound.c.next_attempt, _outbound.c.last_error, _outbound.c.sent,
           _outbound.c.deadline, _outbound.c.envelope_from, _ticket.c.number)


def register(cli: click.Group) -> None:
    cli.add_command(outbox)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _data(row: Any) -> dict[str, Any]:
    return {"id": row.id, "created": _iso(row.created), "event": row.event,
            "ticket": row.number, "message_id": row.message_id,
            "recipients": list(row.recipients), "status": row.status,
            "attempts": row.attempts, "next_attempt": _iso(row.next_attempt),
            "last_error": row.last_error, "sent": _iso(row.sent)}


def _select() -> Any:
    return select(*_FIELDS).select_from(
        _outbound.outerjoin(_ticket, _ticket.c.id == _outbound.c.ticket_id))


@click.group()
def outbox() -> None:
    """Outbound mail and its delivery state."""


@outbox.command("list")
@click.option("--status", type=click.Choice(["queued", "sent", "failed", "suppressed"]))
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@json_option
@pass_context
def outbox_list(context: CliContext, status: str | None, limit: int, as_json: bool) -> None:
    """Outbound mail, newest first."""
    statement = _select().order_by(_outbound.c.id.desc()).limit(limit)
    if status:
        statement = statement.where(_outbound.c.status == status)
    with context.app().db.read() as session:
        rows = [_data(row) for row in session.execute(statement)]
    if as_json:
        echo_json(rows)
        return
    echo_table([{**r, "created": r["created"][:19].replace("T", " "),
                 "recipients": ", ".join(r["recipients"]),
                 "last_error": (r["last_error"] or "")[:120] or None} for r in rows],
               _COLUMNS, empty="(no mail)")


@outbox.command("show")
@click.argument("mail_id", type=int)
@json_object_option
@click.option("--raw", is_flag=True,
              help="Print the mail exactly as it is sent (one not sent yet: as it will be).")
@pass_context
def outbox_show(context: CliContext, mail_id: int, as_json: bool, raw: bool) -> None:
    """One outbound mail: envelope, status, attempts, last error."""
    from gateway.outbound.outbox import message_bytes

    app = context.app()
    with app.db.read() as session:
        row = session.execute(_select().add_columns(_outbound.c.raw, _outbound.c.recipe)
                              .where(_outbound.c.id == mail_id)).first()
    if row is None:
        raise NotFound(f"no outbound mail with id {mail_id}")
    message = message_bytes(row, app.renderer)
    if raw:
        sys.stdout.buffer.write(message)
        return
    data = {**_data(row), "envelope_from": row.envelope_from,
            "deadline": _iso(row.deadline), "size": len(message),
            "rendered": row.raw is not None}
    if as_json:
        echo_json(data)
        return
    for key, value in data.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        click.echo(f"{key + ':':15}{'-' if shown in (None, '') else shown}")


@outbox.command("retry")
@click.argument("mail_id", type=int, required=False)
@click.option("--all", "retry_all", is_flag=True, help="Retry every failed or suppressed mail.")
@click.option("--now", "send_now", is_flag=True,
              help="Send them now through the configured transport and print the results "
                   "(otherwise the running service sends them within seconds).")
@pass_context
def outbox_retry(context: CliContext, mail_id: int | None, retry_all: bool,
                 send_now: bool) -> None:
    """Put failed or suppressed mail back into the queue (attempts reset, a new deadline:
    `outbound.delivery_deadline_hours` from now)."""
    from gateway.outbound.outbox import drain, requeue_failed

    if (mail_id is None) == (not retry_all):
        raise InvalidInput("give one ID or --all")
    app = context.app()
    transport = None
    if send_now:   # a broken transport setting fails before anything is changed
        from gateway.outbound.transport import transport_from_settings

        transport = transport_from_settings(app.settings)
    deadline = timedelta(hours=app.settings.outbound.delivery_deadline_hours)
    with app.db.write() as session:
        ids = requeue_failed(session, None if mail_id is None else [mail_id], deadline=deadline)
        if mail_id is not None and not ids:
            raise NotFound(f"outbound mail {mail_id} does not exist or is neither failed "
                           "nor suppressed")
    click.echo(f"requeued {len(ids)} mail(s)", err=True)
    if transport is None:
        return
    from gateway.outbound.answers import tell_staff_on_failure

    hook = tell_staff_on_failure(app.answering)
    for start in range(0, len(ids), 100):
        chunk = ids[start:start + 100]
        tried = set()
        for delivery in drain(app.db, transport, renderer=app.renderer, limit=len(chunk),
                              mail_ids=chunk, on_failed=hook):
            tried.add(delivery.mail_id)
            when = (f", next attempt {delivery.next_attempt:%Y-%m-%d %H:%M} UTC"
                    if delivery.next_attempt else "")
            click.echo(f"outbox {delivery.mail_id}: {delivery.status} "
                       f"({delivery.detail}{when})")
        for waiting in (i for i in chunk if i not in tried):
            click.echo(f"outbox {waiting}: not sent now (an earlier mail of its ticket to "
                       "the same recipient goes first, or it was held back; see `outbox list`)")
