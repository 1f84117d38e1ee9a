"""Admin commands: init, check-config, db, staff, template, queue."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from gateway.cli.context import CliContext, pass_context
from gateway.cli.output import echo_json, echo_table, json_object_option, json_option
from gateway.config.loading import config_warnings, data_dir_config, environment_problems
from gateway.errors import NotFound
from gateway.store.db import display_url
from gateway.store.migrate import head_revision
from gateway.store.models import GuideQuestion, Queue, QueueStaff, Staff, Template, table_of


def register(cli: click.Group) -> None:
    for command in (init, check_config, db, staff, template, queue):
        cli.add_command(command)


@click.command()
@click.argument("path", default="ticketgw.toml", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path: Path, force: bool) -> None:
    """Write a commented sample config to PATH (default ./ticketgw.toml)."""
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists already (use --force to overwrite it)")
    sample = resources.files("gateway.config").joinpath("sample_config.toml").read_text("utf-8")
    path.write_text(sample, encoding="utf-8")
    click.echo(f"wrote {path}; edit it, then: ticketgw --config {path} check-config; "
               f"ticketgw --config {path} db upgrade")


@click.command("check-config")
@pass_context
def check_config(context: CliContext) -> None:
    """Validate the config; print every problem and exit 2 if there is one. Warnings (valid
    but unsafe settings) are printed too and do not change the exit code."""
    settings = context.settings          # raises ConfigError with every problem
    for warning in config_warnings(settings):
        click.echo(f"config warning: {warning}", err=True)
    problems = environment_problems(settings)
    if problems:
        for problem in problems:
            click.echo(f"config error: {problem}", err=True)
        raise SystemExit(2)
    click.echo(f"ok: {settings.source} ({len(settings.queue)} queues, "
               f"{len(settings.template)} templates, {len(settings.mailbox)} mailboxes)")
    if context.config_path is None and context.config_file == data_dir_config():
        click.echo(f"config file found in the data directory: {context.config_file} (written "
                   "by --demo; --config or $TICKETGW_CONFIG would take precedence)")
    for key, variable in settings.from_environment:
        click.echo(f"from the environment: {key} ({variable})")


@click.group()
def db() -> None:
    """Create, migrate and inspect the database."""


@db.command("upgrade")
@pass_context
def db_upgrade(context: CliContext) -> None:
    """Create or migrate the database to this version's schema (safe to repeat)."""
    from gateway.app import prepare_database

    app = context.app(require_schema=False)
    prepare_database(app, migrate=True)
    click.echo(f"database {display_url(app.db.url)} is at revision {head_revision()}")


@db.command("status")
@pass_context
def db_status(context: CliContext) -> None:
    """Show the database's schema revision and the one this version needs."""
    app = context.app(require_schema=False)
    current = app.db.schema_revision()
    head = head_revision()
    click.echo(f"database: {display_url(app.db.url)}")
    click.echo(f"revision: {current or 'none (empty database)'}; needed: {head}")
    if current != head:
        click.echo("run `ticketgw db upgrade`")
        raise SystemExit(1)


@click.group()
def staff() -> None:
    """Staff (configured per queue in the config file)."""


@staff.command("list")
@json_option
@pass_context
def staff_list(context: CliContext, as_json: bool) -> None:
    """List staff with the queues they serve."""
    app = context.app()
    s, q, qs = table_of(Staff), table_of(Queue), table_of(QueueStaff)
    with app.db.read() as session:
        people = session.execute(select(s).order_by(s.c.email)).all()
        queues: dict[int, list[str]] = {}
        for staff_id, key in session.execute(
                select(qs.c.staff_id, q.c.key).join(q, q.c.id == qs.c.queue_id)):
            queues.setdefault(staff_id, []).append(key)
    rows = [{"email": p.email, "name": p.name, "language": p.language, "active": p.active,
             "queues": sorted(queues.get(p.id, []))} for p in people]
    if as_json:
        echo_json(rows)
    else:
        echo_table([{**r, "queues": ", ".join(r["queues"])} for r in rows],
                   ["email", "name", "language", "active", "queues"],
                   empty="(no staff: add them to a [[queue]] in the config)")


@click.group()
def template() -> None:
    """Ticket templates and their conversation guides (configured in the config file)."""


def _template_rows(context: CliContext) -> list[dict[str, Any]]:
    app = context.app()
    t, q, g = table_of(Template), table_of(Queue), table_of(GuideQuestion)
    with app.db.read() as session:
        templates = session.execute(
            select(t, q.c.key.label("queue_key")).join(q, q.c.id == t.c.queue_id)
            .order_by(t.c.group, t.c.key)).all()
        guides: dict[int, list[dict[str, Any]]] = {}
        for row in session.execute(select(g).order_by(g.c.template_id, g.c.position)):
            guides.setdefault(row.template_id, []).append(
                {"key": row.key, "label": row.labels, "required": row.required})
    return [{"id": r.key, "group": r.group, "name": r.names, "queue": r.queue_key,
             "priority": r.default_priority, "addresses": r.addresses,
             "organisations": r.organisations, "active": r.active,
             "guide": guides.get(r.id, [])} for r in templates]


@template.command("list")
@json_option
@click.option("--all", "include_inactive", is_flag=True,
              help="Include templates no longer configured.")
@pass_context
def template_list(context: CliContext, as_json: bool, include_inactive: bool) -> None:
    """List templates by group."""
    rows = [r for r in _template_rows(context) if include_inactive or r["active"]]
    if as_json:
        echo_json(rows)
        return
    echo_table([{**r, "name": r["name"].get("en", ""), "addresses": ", ".join(r["addresses"]),
                 "guide": len(r["guide"])} for r in rows],
               ["id", "group", "queue", "priority", "guide", "name", "addresses"],
               empty="(no templates: add [[template]] entries to the config, or try --demo)")


@template.command("show")
@click.argument("template_id")
@json_object_option
@pass_context
def template_show(context: CliContext, template_id: str, as_json: bool) -> None:
    """Show one template with its conversation guide."""
    rows = [r for r in _template_rows(context) if r["id"] == template_id]
    if not rows:
        raise NotFound(f"no template {template_id!r} (see `ticketgw template list`)")
    row = rows[0]
    if as_json:
        echo_json(row)
        return
    for key in ("id", "group", "queue", "priority", "addresses", "organisations", "active"):
        click.echo(f"{key + ':':15}{row[key]}")
    for lang, name in row["name"].items():
        click.echo(f"{'name.' + lang + ':':15}{name}")
    click.echo("guide:")
    for question in row["guide"]:
        mark = "*" if question["required"] else " "
        labels = " / ".join(question["label"].values())
        click.echo(f"  {mark} {question['key']}: {labels}")


@click.group()
def queue() -> None:
    """Queues (configured in the config file)."""


@queue.command("list")
@json_option
@pass_context
def queue_list(context: CliContext, as_json: bool) -> None:
    """List queues."""
    app = context.app()
    q = table_of(Queue)
    with app.db.read() as session:
        rows = [{"id": r.key, "name": r.name, "from": r.from_address, "language": r.language,
                 "active": r.active} for r in session.execute(select(q).order_by(q.c.key))]
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["id", "name", "language", "active", "from"])
