"""File-exchange commands: `files new`, `files list`, `files revoke`."""

from __future__ import annotations

import click

from gateway.cli.context import CliContext, pass_context
from gateway.cli.output import echo_json, echo_table, json_option
from gateway.files.exchange import MAX_DAYS, create_area, list_areas, revoke_area
from gateway.tickets.ticket import find_ticket


def register(cli: click.Group) -> None:
    cli.add_command(files)


@click.group()
def files() -> None:
    """Token-secured file exchange: areas where a customer uploads files for a ticket."""


@files.command("new")
@click.option("--ticket", "number", required=True, metavar="NUMBER",
              help="The ticket the uploaded files are attached to.")
@click.option("--expires-days", type=click.IntRange(1, MAX_DAYS), default=None,
              help="Days the link is valid (default: [files] expiry_days, 7).")
@click.option("--download-limit", type=click.IntRange(0, None), default=None,
              help="Downloads allowed in the area; 0 = no limit (default: [files] "
                   "download_limit).")
@pass_context
def files_new(context: CliContext, number: str, expires_days: int | None,
              download_limit: int | None) -> None:
    """Open an exchange area for a ticket and mail its link to the ticket's customer.

    The link is printed once: only a hash of its token is stored, so it cannot be shown
    again (revoke the area and make a new one if it is lost)."""
    app = context.app()
    with app.db.write() as session:
        ticket = find_ticket(session, number)
        assert ticket.id is not None
        created = create_area(session, app.answering, ticket.id, created_by="cli",
                              expires_days=expires_days, download_limit=download_limit)
    click.echo(created.url)
    expires = created.expires.strftime("%Y-%m-%d %H:%M UTC")
    if created.mailed_to:
        click.echo(f"area {created.id} for Ticket#{ticket.number}, valid until {expires}; "
                   f"link mailed to {created.mailed_to}", err=True)
    else:
        click.echo(f"area {created.id} for Ticket#{ticket.number}, valid until {expires}; "
                   "warning: the ticket has no customer address we can write to, the link was "
                   "NOT mailed: pass it on yourself", err=True)


@files.command("list")
@click.option("--ticket", "number", default=None, metavar="NUMBER", help="Only this ticket.")
@json_option
@pass_context
def files_list(context: CliContext, number: str | None, as_json: bool) -> None:
    """Exchange areas, newest first: state (open, expired, revoked, downloads-used),
    expiry, downloads and files."""
    app = context.app()
    with app.db.read() as session:
        if number is not None:
            find_ticket(session, number)      # an unknown number is an error, not "(none)"
        rows = list_areas(session, ticket_number=number)
    if as_json:
        echo_json(rows)
        return
    echo_table([{**r, "files": len(r["files"]),
                 "downloads": (f"{r['download_count']}/{r['download_limit']}"
                               if r["download_limit"] is not None else str(r["download_count"])),
                 "mailed_to": r["mailed_to"] or "-"} for r in rows],
               ["id", "ticket", "state", "expires", "files", "downloads", "created_by",
                "mailed_to"], empty="(no file-exchange areas)")


@files.command("revoke")
@click.argument("area_id", metavar="ID", type=int)
@pass_context
def files_revoke(context: CliContext, area_id: int) -> None:
    """End an area at once: its link is refused like an unknown one from now on."""
    app = context.app()
    with app.db.write() as session:
        changed = revoke_area(session, area_id)
    click.echo(f"area {area_id} revoked" if changed else f"area {area_id} was revoked already")
