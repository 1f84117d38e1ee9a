"""`serve` (run everything) and `demo` (load demo data).

`--demo` and `demo` make the demo hold for every command run against the same data: with no
config file given (no `--config`, no `$TICKETGW_CONFIG`, none in the data directory yet) they
write one into the data directory (`demo/config_file.py`), which the config lookup finds
from then on. With a config file they add the demo to it for this command only, as before,
and say how to keep it (copy the entries of demo.toml into the file).

`serve` first checks that its listeners' addresses are free (`_listeners_taken`) and stops
before touching the database when one is not: a `serve` that cannot start (another one runs)
must not sync its config over the running one's (which would mark the queues and templates
it lacks, such as the demo's, inactive). The listeners' own bind still decides.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import click

from gateway.app import App, prepare_database
from gateway.cli.context import CliContext, pass_context
from gateway.config.loading import data_dir_config, merge_config, read_toml
from gateway.config.settings import Settings, host_port
from gateway.observe.logs import configure_logging
from gateway.store.db import display_url


def register(cli: click.Group) -> None:
    cli.add_command(serve)
    cli.add_command(demo)


def _configure_demo(context: CliContext) -> None:
    """Write the demo config into the data directory, or add the demo to the given file."""
    from gateway.cli.demo import demo_overlay
    from gateway.cli.demo.config_file import write_demo_config

    path = context.config_file
    if path is None:
        path = data_dir_config()
        write_demo_config(path)
        click.echo(f"ticketgw: wrote the demo config {path}; every ticketgw command run here "
                   "without --config reads it (delete it to go back to the defaults)", err=True)
        return
    overlay = demo_overlay()
    context.overlay = overlay
    data = read_toml(path)
    if merge_config(data, overlay) != data:
        demo_file = Path(__file__).parent / "demo" / "demo.toml"
        click.echo(f"ticketgw: note: the demo's queues, staff and templates are added to {path} "
                   "for this command only; other commands read the file alone (and `serve` or "
                   "`db upgrade` without --demo mark them inactive). To keep them, copy the "
                   f"entries of {demo_file} into {path}.", err=True)


def _listeners_taken(settings: Settings) -> list[str]:
    """The configured listeners whose address cannot be bound now, one problem each."""
    problems = []
    for name, listen in (("web server", settings.web.listen),
                         ("smtp listener", settings.inbound.smtp),
                         ("lmtp listener", settings.inbound.lmtp)):
        if not listen:
            continue
        host, port = host_port(listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            # SO_REUSEADDR, as the listeners bind: only a socket listening there is in the way
            with socket.create_server((host, port), family=family, reuse_port=False):
                pass
        except OSError as exc:
            problems.append(f"{name} could not listen on {host}:{port}: {exc.strerror}")
    return problems


def _prepare(context: CliContext, *, with_demo: bool, check_listeners: bool = False) -> App:
    if with_demo:
        _configure_demo(context)
    taken = _listeners_taken(context.settings) if check_listeners else []
    for problem in taken:
        click.echo(f"error: {problem}", err=True)
    if taken:
        sys.exit(1)
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

    app = _prepare(context, with_demo=demo, check_listeners=True)
    settings = app.settings
    # [logging] from here on (-v/-vv may only lower the level); the worker process follows
    configure_logging(settings.logging, level=context.log_level)
    say = _teller(settings)
    say(f"ticketgw: config {settings.source}; database {display_url(app.db.url)}")
    if settings.web.listen:
        say(f"ticketgw: web on http://{settings.web.listen} (/healthz, /metrics)")
    say("ticketgw: running; Ctrl-C or SIGTERM stops")
    try:
        asyncio.run(run_service(build_components(app)))
    except OSError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    say("ticketgw: stopped")


def _teller(settings: Settings) -> Callable[[str], None]:
    """How `serve` says what it does: on stderr as text, or, when the log is JSON, as log
    records (INFO), so that stderr holds nothing but JSON lines."""
    if settings.logging.format == "json":
        return logging.getLogger("gateway.cli.serve").info
    return lambda line: click.echo(line, err=True)


@click.command()
@pass_context
def demo(context: CliContext) -> None:
    """Create/migrate the database and load the demo data, without serving.

    With no config file, writes the demo config into the data directory (var/ticketgw.toml),
    which every later command run here finds; with --config, adds the demo for this command
    only and says how to keep it.
    """
    _prepare(context, with_demo=True)
    click.echo("demo ready: try `ticketgw ticket list` or `ticketgw serve --demo`")
