"""Inbound commands: ingest (the MTA pipe and bulk import), the processing log, quarantine,
and explain (a dry run)."""

from __future__ import annotations

import contextlib
import mailbox
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select, update

from gateway.cli.context import CliContext, pass_context
from gateway.cli.output import echo_json, echo_table, json_object_option, json_option
from gateway.errors import GatewayError, InvalidInput, NotFound
from gateway.inbound.hops import describe_hop
from gateway.inbound.intake import Envelope, Incoming, accept_many, stored_raw
from gateway.store.models import ReceivedMail, Ticket, table_of, utcnow

EX_TEMPFAIL = 75
BATCH = 100
PROCESS_BATCH = 20     # mails processed per transaction (each in its own savepoint)
_received = table_of(ReceivedMail)
_ticket = table_of(Ticket)


def register(cli: click.Group) -> None:
    for command in (ingest, inbound, quarantine, explain):
        cli.add_command(command)


# -- ingest ------------------------------------------------------------------------------------

def _messages(files: tuple[str, ...], mbox: Path | None, maildir: Path | None
              ) -> tuple[int | None, Iterator[bytes]]:
    """(count if known, the raw messages) from files/stdin, an mbox or a Maildir."""
    if mbox is not None:
        box: mailbox.Mailbox[Any] = mailbox.mbox(mbox, create=False)
    elif maildir is not None:
        box = mailbox.Maildir(maildir, factory=None, create=False)
    else:
        paths = files or ("-",)
        return len(paths), (sys.stdin.buffer.read() if p == "-" else Path(p).read_bytes()
                            for p in paths)
    keys = list(box.keys())

    def read_all() -> Iterator[bytes]:
        try:
            for key in keys:
                yield box.get_bytes(key)
        finally:
            box.close()

    return len(keys), read_all()


@click.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--recipient", "-r", "recipients", multiple=True, metavar="ADDR",
              help="Envelope recipient (repeatable), as the MTA gives it: ${recipient}.")
@click.option("--sender", "-f", default=None, metavar="ADDR",
              help="Envelope sender as the MTA gives it: ${sender} (empty for bounces).")
@click.option("--mbox", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Import every message of an mbox file.")
@click.option("--maildir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Import every message of a Maildir.")
@click.option("--no-process", is_flag=True,
              help="Only store; the running service's worker processes the mail.")
@pass_context
def ingest(context: CliContext, files: tuple[str, ...], recipients: tuple[str, ...],
           sender: str | None, mbox: Path | None, maildir: Path | None,
           no_process: bool) -> None:
    """Store mail as an MTA pipe would deliver it (FILE or stdin), then process it.

    Exit 0 once every mail is stored (then ticketed, appended, ignored, rejected or
    quarantined: never dropped), whatever happens while processing it: a mail that fails
    there stays queued for the service's worker. An empty input is an empty mail, stored.
    Exit 75 (EX_TEMPFAIL) only when it could not be stored, so the MTA keeps the mail and
    retries. Any failure before the commit, even a broken config, is 75 here.
    """
    if sum(bool(x) for x in (files, mbox, maildir)) > 1:
        raise click.UsageError("give FILEs, --mbox or --maildir, not several")
    try:
        stored = _store(context, files, recipients, sender, mbox, maildir)
    except (GatewayError, OSError, Exception) as exc:
        click.echo(f"ticketgw ingest: not stored, try again later: {exc}", err=True)
        sys.exit(EX_TEMPFAIL)
    if not no_process:
        try:
            _process_stored(context, stored, label="processing", command="ingest")
            sys.stdout.flush()
            sys.stderr.flush()
        except BrokenPipeError:
            _discard_output()


def _discard_output() -> None:
    """The MTA stopped reading what we print (Postfix's pipe closes it after a few KB, e.g.
    a long traceback): the mail is stored, and exit 0 must say so. Without this the next
    write, or Python's flush at exit, fails and the exit code (1 or 120) bounces the mail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    os.close(devnull)


def _process_stored(context: CliContext, mail_ids: list[int], *, label: str,
                    command: str) -> None:
    """`_process`, for mail that is already stored: a failure here must not fail the
    command (the MTA would bounce a mail we keep), so it is one line on stderr and the
    mail stays queued; the service's worker takes it up when its lease ends."""
    try:
        _process(context, mail_ids, label=label)
    except Exception as exc:
        first = ", ".join(map(str, mail_ids[:5])) + (", ..." if len(mail_ids) > 5 else "")
        error = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
        click.echo(f"ticketgw {command}: inbound {first} is stored, but processing it "
                   f"failed ({error}); it stays queued for the service's worker", err=True)


def _store(context: CliContext, files: tuple[str, ...], recipients: tuple[str, ...],
           sender: str | None, mbox: Path | None, maildir: Path | None) -> list[int]:
    app = context.app()
    count, messages = _messages(files, mbox, maildir)
    envelope = Envelope(source="ingest", mail_from=sender, rcpt_to=recipients)
    stored: list[int] = []
    batch: list[Incoming] = []
    bulk = mbox is not None or maildir is not None
    with click.progressbar(length=count or 0, label="storing", file=sys.stderr,
                           hidden=not bulk) as bar:
        for raw in messages:
            batch.append(Incoming(raw, envelope))
            if len(batch) >= BATCH:
                stored += accept_many(app.db, batch, blobs=app.blobs)
                bar.update(len(batch))
                batch = []
        stored += accept_many(app.db, batch, blobs=app.blobs)
        bar.update(len(batch))
    if bulk:
        click.echo(f"stored {len(stored)} mails", err=True)
    return stored


def _process(context: CliContext, mail_ids: list[int], *, label: str) -> None:
    """Process stored mails now, reporting each outcome; failures stay queued (exit 0)."""
    from gateway.inbound.worker import lease_ids, process_batch  # the pipeline is heavy

    app = context.app()
    results = []
    leased = lease_ids(app.db, mail_ids)
    with click.progressbar(length=len(leased), label=label, file=sys.stderr,
                           hidden=len(mail_ids) < 2) as bar:
        for start in range(0, len(leased), PROCESS_BATCH):
            chunk = leased[start:start + PROCESS_BATCH]
            results += process_batch(app.db, app.stages, chunk)
            bar.update(len(chunk))
    if len(results) == 1:
        r = results[0]
        which = "".join(f", {label} {value[:200]!r}" for label, value in (
            ("from", r.from_address), ("subject", r.subject)) if value) \
            if r.outcome in ("quarantined", "pending") else ""
        click.echo(f"inbound {r.mail_id}: {r.outcome} {r.ticket_number or ''} ({r.reason})"
                   .replace("  ", " ") + which, err=True)
    elif not results:   # between requeueing and leasing, the service's worker took them
        click.echo(f"processed: none here; the service's worker has taken up the "
                   f"{len(mail_ids)} mail(s)", err=True)
    else:
        summary: dict[str, int] = {}
        for r in results:
            summary[r.outcome] = summary.get(r.outcome, 0) + 1
        click.echo("processed: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.items())),
                   err=True)


# -- the processing log ---------------------------------------------------------------------

_LOG_COLUMNS = ["id", "received", "source", "outcome", "ticket", "rule", "from", "subject"]


def _log_rows(context: CliContext, *, outcome: str | None, limit: int) -> list[dict[str, Any]]:
    app = context.app()
    statement = (select(_received.c.id, _received.c.received, _received.c.source,
                        _received.c.message_id, _received.c.from_address,
                        _received.c.subject, _received.c.outcome, _received.c.reason,
                        _received.c.rule, _ticket.c.number)
                 .select_from(_received.outerjoin(_ticket, _ticket.c.id == _received.c.ticket_id))
                 .order_by(_received.c.id.desc()).limit(limit))
    if outcome:
        statement = statement.where(_received.c.outcome == outcome)
    with app.db.read() as session:
        return [{"id": r.id, "received": r.received.isoformat(), "source": r.source,
                 "message_id": r.message_id, "from": r.from_address, "subject": r.subject,
                 "outcome": r.outcome, "reason": r.reason, "rule": r.rule, "ticket": r.number}
                for r in session.execute(statement)]


def _echo_log(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        echo_json(rows)
    else:
        echo_table([{**r, "received": r["received"][:19].replace("T", " ")} for r in rows],
                   _LOG_COLUMNS, empty="(no mail)")


def _show(context: CliContext, mail_id: int, as_json: bool, raw: bool) -> None:
    app = context.app()
    with app.db.read() as session:
        row = session.execute(
            select(_received, _ticket.c.number)
            .select_from(_received.outerjoin(_ticket, _ticket.c.id == _received.c.ticket_id))
            .where(_received.c.id == mail_id)).first()
    if row is None:
        raise NotFound(f"no received mail with id {mail_id}")
    if raw:
        sys.stdout.buffer.write(stored_raw(app.blobs, row.raw, row.size, row.raw_sha256))
        return
    data = {"id": row.id, "received": row.received.isoformat(), "source": row.source,
            "envelope_from": row.envelope_from, "envelope_to": row.envelope_to,
            "client": row.client_address,
            "hop": describe_hop(row.source, row.client_address,
                                app.settings.inbound.trusted_relays),
            "size": row.size, "sha256": row.raw_sha256, "message_id": row.message_id,
            "from": row.from_address, "subject": row.subject, "status": row.status,
            "outcome": row.outcome, "reason": row.reason, "rule": row.rule,
            "ticket": row.number, "attempts": row.attempts, "last_error": row.last_error,
            "processed": row.processed.isoformat() if row.processed else None}
    if as_json:
        echo_json(data)
        return
    for key, value in data.items():
        click.echo(f"{key + ':':15}{'-' if value in (None, '', []) else value}")


@click.group()
def inbound() -> None:
    """The processing log: every received mail and what became of it."""


@inbound.command("list")
@click.option("--outcome", type=click.Choice(["created", "appended", "ignored", "rejected",
                                              "quarantined", "pending"]))
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@json_option
@pass_context
def inbound_list(context: CliContext, outcome: str | None, limit: int, as_json: bool) -> None:
    """Received mail, newest first."""
    _echo_log(_log_rows(context, outcome=outcome, limit=limit), as_json)


@inbound.command("show")
@click.argument("mail_id", type=int)
@json_object_option
@click.option("--raw", is_flag=True, help="Print the mail exactly as received.")
@pass_context
def inbound_show(context: CliContext, mail_id: int, as_json: bool, raw: bool) -> None:
    """One received mail: envelope, outcome, reason, rule, attempts."""
    _show(context, mail_id, as_json, raw)


@click.group()
def quarantine() -> None:
    """Mail that could not be processed: inspect it, fix the cause, retry it."""


@quarantine.command("list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@json_option
@pass_context
def quarantine_list(context: CliContext, limit: int, as_json: bool) -> None:
    """Quarantined mail, newest first."""
    _echo_log(_log_rows(context, outcome="quarantined", limit=limit), as_json)


@quarantine.command("show")
@click.argument("mail_id", type=int)
@json_object_option
@click.option("--raw", is_flag=True, help="Print the mail exactly as received.")
@pass_context
def quarantine_show(context: CliContext, mail_id: int, as_json: bool, raw: bool) -> None:
    """One quarantined mail with the reason and last error."""
    _show(context, mail_id, as_json, raw)


@quarantine.command("retry")
@click.argument("mail_id", type=int, required=False)
@click.option("--all", "retry_all", is_flag=True, help="Retry every quarantined mail.")
@click.option("--no-process", is_flag=True, help="Only requeue; the worker processes them.")
@pass_context
def quarantine_retry(context: CliContext, mail_id: int | None, retry_all: bool,
                     no_process: bool) -> None:
    """Put quarantined mail back into the queue (attempts reset) and process it."""
    if (mail_id is None) == (not retry_all):
        raise InvalidInput("give one ID or --all")
    app = context.app()
    condition = _received.c.status == "quarantined"
    if mail_id is not None:
        condition = condition & (_received.c.id == mail_id)
    with app.db.write() as session:
        ids = list(session.execute(select(_received.c.id).where(condition)).scalars())
        if mail_id is not None and not ids:
            raise NotFound(f"mail {mail_id} is not in quarantine")
        if ids:
            session.execute(update(_received).where(_received.c.id.in_(ids)).values(
                status="pending", outcome="pending", attempts=0, next_attempt=utcnow(),
                processed=None, lease_holder=None))
    click.echo(f"requeued {len(ids)} mail(s)", err=True)
    if ids and not no_process:
        _process_stored(context, ids, label="reprocessing", command="quarantine retry")


# -- explain ----------------------------------------------------------------------------------

@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--recipient", "-r", "recipients", multiple=True, metavar="ADDR",
              help="Envelope recipient (default: the To and Cc addresses).")
@click.option("--sender", "-f", default=None, metavar="ADDR", help="Envelope sender.")
@json_object_option
@pass_context
def explain(context: CliContext, file: str, recipients: tuple[str, ...], sender: str | None,
            as_json: bool) -> None:
    """Dry run: what would happen to this mail? Changes nothing."""
    from gateway.cli.explaining import explain_mail

    raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    report = explain_mail(context.app(), raw, recipients=recipients, sender=sender)
    if as_json:
        echo_json(report)
        return
    width = max(18, *(len(key) + 2 for key in report))   # the values in one column
    for key, value in report.items():
        if isinstance(value, dict):
            click.echo(f"{key}:")
            for inner, inner_value in value.items():
                click.echo(f"  {inner}: {inner_value}")
        else:
            click.echo(f"{key + ':':{width}}{'-' if value in (None, '', [], ()) else value}")
