"""`ticketgw digest send`: the staff digest now, or as of a given moment (issue #16 item 4).

The scheduler sends it on `[digest] schedule`; this is for operators (a digest outside the
schedule, a look at what it would contain) and for tests, which pass the moment instead of
waiting for it.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import click

from gateway.cli.context import CliContext, pass_context
from gateway.cli.output import echo_json, echo_table, json_option
from gateway.errors import InvalidInput
from gateway.outbound.digest import send_digests
from gateway.store.models import utcnow


def register(cli: click.Group) -> None:
    cli.add_command(digest)


@click.group()
def digest() -> None:
    """The staff digest: each staff member's open tickets by mail."""


@digest.command("send")
@click.option("--as-of", "as_of", default=None, metavar="ISO",
              help="The moment the digest is for, e.g. 2026-12-07T08:00 (in [tickets] "
                   "timezone unless it names its own offset). Default: now.")
@click.option("--staff", default=None, metavar="ADDRESS",
              help="Only this staff member (an address of a [[queue]] staff list).")
@click.option("--dry-run", is_flag=True,
              help="Show who would get which tickets; queue no mail.")
@json_option
@pass_context
def digest_send(context: CliContext, as_of: str | None, staff: str | None, dry_run: bool,
                as_json: bool) -> None:
    """Queue the digest for every staff member of a queue (those with nothing open get
    none), whatever `[digest] schedule` says."""
    app = context.app()
    now = _moment(as_of, app.settings.tickets.timezone) if as_of else utcnow()
    with app.db.write() as session:
        results = send_digests(session, app.answering, now, dry_run=dry_run, only=staff)
    if staff is not None and not results:
        raise InvalidInput(f"{staff} is in no [[queue]] staff list")
    rows = [{**asdict(r), "queues": list(r.queues), "tickets": list(r.tickets)}
            for r in results]
    if as_json:
        echo_json(rows)
        return
    echo_table([{**r, "queues": ", ".join(r["queues"]), "tickets": len(r["tickets"])}
                for r in rows], ["staff", "language", "queues", "tickets", "outcome"],
               empty="(no staff member in any [[queue]] staff list)")


def _moment(text: str, timezone: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"--as-of {text!r} is not an ISO date and time, e.g. "
                           "2026-12-07T08:00 or 2026-12-07T08:00+01:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return moment.astimezone(UTC)
