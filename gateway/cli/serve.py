"""`serve` (run everything) and `demo` (load demo data)."""

from __future__ import annotations

import asyncio
import logging
import sys

import click

from gateway.app import App, prepare_database
from gateway.cli.context import CliContext, pass_context
from gateway.store.db import display_url


def register(cli: click.Group) -> None:
    cli.add_command(serve)
    cli.add_command(demo)


def _prepare(context: CliContext, *, with_demo: bool) -> App:
    if with_demo:
        from gateway.cli.demo import demo_overlay

        context.overlay = demo_overlay()
    app = context.app(require_schema=False)
    # the demo is the newcomer's path: it may create the database; otherwise insist on
    # `ticketgw db upgrade` having been run, so no schema change happens by surprise
    prepare_database(app, migrate=with_demo)
    if with_demo:
        from gateway.cli.demo import load_demo

        if load_demo(app.db, app.numbering):
            click.echo("demo data loaded: customers mmuster, emusterfrau, jdoe, jsmith; "
                       "5 tickets; templates incident, sap-incident, change, order; "
                       "10 FAQ articles (faq@support.example.com answers by mail)", err=True)
    return app


@click.command()
@click.option("--demo", is_flag=True,
              help="Add demo queues, templates, customers and tickets (creates the database "
                   "if needed).")
@pass_context
def serve(context: CliContext, demo: bool) -> None:
    """Run the gateway: web view and scheduler (SMTP/LMTP and IMAP as configured)."""
    from gateway.service import build_components, run_service

    logging.getLogger().setLevel(min(logging.getLogger().level, logging.INFO))
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("apscheduler").setLevel(logging.WARNING)   # one line per job run
        logging.getLogger("alembic").setLevel(logging.WARNING)
        logging.getLogger("mail.log").setLevel(logging.WARNING)   # aiosmtpd: per connection
    app = _prepare(context, with_demo=demo)
    settings = app.settings
    click.echo(f"ticketgw: config {settings.source}; database {display_url(app.db.url)}",
               err=True)
    if settings.web.listen:
        click.echo(f"ticketgw: web on http://{settings.web.listen} (/healthz, /metrics)", err=True)
    click.echo("ticketgw: running; Ctrl-C or SIGTERM stops", err=True)
    try:
        asyncio.run(run_service(build_components(app)))
    except OSError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo("ticketgw: stopped", err=True)


@click.command()
@pass_context
def demo(context: CliContext) -> None:
    """Create/migrate the database and load the demo data, without serving.

    Commands that read the configured queues and templates then see the demo's too; start
    the service with `ticketgw serve --demo` to keep them configured.
    """
    _prepare(context, with_demo=True)
    click.echo("demo ready: try `ticketgw ticket list` or `ticketgw serve --demo`")
