"""Customer commands: add, import (CSV, all rows or none), list."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.cli.context import CliContext, pass_context
from gateway.cli.output import echo_json, echo_table, json_option
from gateway.errors import InvalidInput
from gateway.tickets.customers import (
    NewCustomer,
    add_customer,
    import_customers,
    list_customers,
)


def register(cli: click.Group) -> None:
    cli.add_command(customer)


@click.group()
def customer() -> None:
    """Customer users: the people who open tickets (username and address as given)."""


@customer.command("add")
@click.argument("username")
@click.argument("email")
@click.option("--name", default="", help="Full name.")
@click.option("--org", "organisation", default="", help="Organisation key (created if new).")
@click.option("--lang", "language", default="de", type=click.Choice(["de", "en"]),
              show_default=True, help="Language of the mails they get.")
@pass_context
def customer_add(context: CliContext, username: str, email: str, name: str,
                 organisation: str, language: str) -> None:
    """Add a customer user. They log in first through "password lost"."""
    app = context.app()
    with app.db.write() as session:
        add_customer(session, NewCustomer(username, email, name, organisation, language))
    click.echo(f"added customer {username} <{email}>")


@customer.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_context
def customer_import(context: CliContext, file: Path) -> None:
    """Import customers from a UTF-8 CSV file with a header line.

    Columns: username, email, name, organisation, language (username and email required).
    Every row is checked first; if any is bad, the bad rows are listed by line number and
    nothing is imported.
    """
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{file}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    app = context.app()
    with app.db.write() as session:
        count = import_customers(session, text)
    click.echo(f"imported {count} customers from {file}")


@customer.command("list")
@click.option("--org", "organisation", default=None, help="Only this organisation.")
@json_option
@pass_context
def customer_list(context: CliContext, organisation: str | None, as_json: bool) -> None:
    """List customer users."""
    app = context.app()
    with app.db.read() as session:
        rows = list_customers(session, organisation)
    if as_json:
        echo_json(rows)
    else:
        echo_table(rows, ["username", "email", "name", "organisation", "language", "active"])
