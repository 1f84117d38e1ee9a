"""Service-level and customer-wait commands: `ticketgw sla check`.

`sla check --json` gives one object per action: `ticket, action, target, due, recipients,
note` (action: sla-reminder | sla-escalation | pending-reminder | pending-closed).
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import click

from gateway.cli.context import CliContext, pass_context
from gateway.cli.output import echo_json, echo_table, json_option
from gateway.errors import InvalidInput
from gateway.store.models import utcnow


def register(cli: click.Group) -> None:
    cli.add_command(sla)


@click.group()
def sla() -> None:
    """Service levels and waiting for customers (docs/admin.md 1.13)."""


def parse_moment(text: str, zone: str) -> datetime:
    """`2026-12-07T08:00` (in [tickets] timezone), or with an offset / `Z`."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"--as-of {text!r} is not a date and time; write e.g. "
                           "2026-12-07T08:00 (in [tickets] timezone) or "
                           "2026-12-07T07:00+00:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(zone))
    return moment.astimezone(UTC)


@sla.command("check")
@click.option("--as-of", "as_of", default=None, metavar="DATETIME",
              help="Check as of this moment instead of now: ISO 8601, e.g. 2026-12-07T08:00 "
                   "(without an offset: in [tickets] timezone).")
@click.option("--dry-run", is_flag=True,
              help="Only say what is due; send nothing and record nothing.")
@json_option
@pass_context
def sla_check(context: CliContext, as_of: str | None, dry_run: bool, as_json: bool) -> None:
    """Send what is due: reminders before and escalations after service-level targets, and
    reminders and closings of tickets waiting for their customer. The running service does
    this every minute; each mail goes out once, however often this runs."""
    from gateway.tickets.deadline_check import check_deadlines  # loads the mail renderer

    app = context.app()
    now = parse_moment(as_of, app.settings.tickets.timezone) if as_of else utcnow()
    with app.db.write() as session:
        actions = check_deadlines(session, app.answering, now, dry_run=dry_run)
    rows = [a.as_dict() for a in actions]
    if as_json:
        echo_json(rows)
        return
    click.echo(f"as of {now.isoformat()}" + (" (dry run: nothing sent or recorded)"
                                              if dry_run else ""))
    echo_table([{**r, "due": (r["due"] or "")[:16].replace("T", " "),
                 "target": r["target"] or "", "recipients": ", ".join(r["recipients"])}
                for r in rows], ["ticket", "action", "target", "due", "recipients"],
               empty="(nothing due)")


@sla.command("recompute")
@pass_context
def sla_recompute(context: CliContext) -> None:
    """Compute the due times of every ticket that is not closed again, from its creation
    time, priority and template: after changing `sla`, `sla_by_priority`, `hours` or
    `holidays` in the config, or to give older tickets due times. Reminders and escalations
    already sent are not sent again."""
    from gateway.tickets.service_levels import recompute_open_tickets

    app = context.app()
    with app.db.write() as session:
        count = recompute_open_tickets(session, app.settings)
    click.echo(f"due times recomputed for {count} tickets that are not closed")
