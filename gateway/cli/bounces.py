"""`ticketgw bounces`: addresses our mail bounced at, and ending a dead address's mark.

`bounces list --json` gives `address, status, permanent, count, dead, first_bounce,
last_bounce, reason` per address, the most recent bounce first. Automatic mail to a dead
address is held back (`outbox list --status suppressed`); see `gateway/outbound/bouncing.py`.
"""

from __future__ import annotations

import click

from gateway.cli.context import CliContext, pass_context
from gateway.cli.output import echo_json, echo_table, json_option
from gateway.errors import NotFound
from gateway.outbound import bouncing

_COLUMNS = ["address", "status", "count", "dead", "last_bounce", "reason"]


def register(cli: click.Group) -> None:
    cli.add_command(bounces)


@click.group()
def bounces() -> None:
    """Addresses our mail bounced at (from delivery reports)."""


@bounces.command("list")
@click.option("--dead", "dead_only", is_flag=True,
              help="Only the addresses that get no automatic mail any more.")
@json_option
@pass_context
def bounces_list(context: CliContext, dead_only: bool, as_json: bool) -> None:
    """Bouncing addresses, the most recent bounce first."""
    with context.app().db.read() as session:
        rows = bouncing.listing(session, dead_only=dead_only)
    if as_json:
        echo_json(rows)
        return
    echo_table([{**r, "last_bounce": str(r["last_bounce"])[:16].replace("T", " "),
                 "reason": str(r["reason"])[:80]} for r in rows],
               _COLUMNS, empty="(no bouncing addresses)")


@bounces.command("clear")
@click.argument("address")
@pass_context
def bounces_clear(context: CliContext, address: str) -> None:
    """Forget ADDRESS's bounces: automatic mail goes there again. Held-back mails stay
    suppressed until `ticketgw outbox retry ID` (or `--all`)."""
    with context.app().db.write() as session:
        if not bouncing.clear(session, address):
            raise NotFound(f"no bounces are recorded for {address}")
    click.echo(f"{address}: bounces forgotten; automatic mail goes there again", err=True)
