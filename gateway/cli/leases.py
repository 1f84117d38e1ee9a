"""`ticketgw leases`: which received and outbound mails are leased by an instance right now,
and which leases ended without a result (the instance died); `leases release` makes such
mails due at once instead of waiting for the next poll.

`leases --json` gives `queue, id, holder, attempts, lease_ends, stale` per lease, the lease
that ends first first. A lease that ended without a result (`stale`) is taken over by the
next instance that polls anyway (within about a second while one runs); releasing it
matters when no instance runs, or to end the lease of an instance that hangs.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from gateway.cli.context import CliContext, pass_context
from gateway.cli.output import echo_json, echo_table
from gateway.errors import InvalidInput, NotFound
from gateway.store.leases import HEARTBEAT, LEASE, QUEUES, held_leases, release_leases
from gateway.store.models import utcnow

_COLUMNS = ["queue", "id", "holder", "attempts", "lease_ends", "state"]


def register(cli: click.Group) -> None:
    cli.add_command(leases)


@click.group(invoke_without_command=True)
@click.option("--stale", is_flag=True,
              help="Only leases that ended without a result (their instance stopped).")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list of objects (stable field names).")
@click.pass_context
def leases(ctx: click.Context, stale: bool, as_json: bool) -> None:
    """Leased received and outbound mail: which instance holds it (hostname:pid), until
    when, and which leases ended without a result.

    \b
    A lease lasts {lease} s and is renewed every {beat} s while the mail is worked on; when
    an instance dies, another takes its mail over once the lease has ended.
    """
    if ctx.invoked_subcommand is not None:
        return
    context = ctx.find_object(CliContext)
    assert context is not None
    now = utcnow()
    with context.app().db.read() as session:
        found = held_leases(session, now, stale_only=stale)
    rows = [{"queue": lease.queue, "id": lease.id, "holder": lease.holder,
             "attempts": lease.attempts, "lease_ends": lease.lease_ends.isoformat(),
             "stale": lease.stale} for lease in found]
    if as_json:
        echo_json(rows)
        return
    echo_table([{**row, "lease_ends": f"{lease.lease_ends:%Y-%m-%d %H:%M:%S}",
                 "state": "ended, no result" if lease.stale else "held"}
                for row, lease in zip(rows, found, strict=True)], _COLUMNS,
               empty="(no leases)")


leases.help = (leases.help or "").format(lease=int(LEASE.total_seconds()),
                                         beat=int(HEARTBEAT.total_seconds()))


@leases.command("release")
@click.argument("mail_ids", metavar="[ID]...", nargs=-1, type=int)
@click.option("--queue", type=click.Choice(sorted(QUEUES)),
              help="The queue the IDs belong to (needed with IDs).")
@click.option("--stale", is_flag=True,
              help="Release every lease that ended without a result, in both queues.")
@pass_context
def leases_release(context: CliContext, mail_ids: Sequence[int], queue: str | None,
                   stale: bool) -> None:
    """End leases now: the mails are due at once and the next instance that polls takes
    them (the attempt stays counted).

    Releasing a lease an instance still holds stops it from renewing that lease but does
    not interrupt it: an outbound mail it is sending may then be sent twice (a received
    mail still becomes one ticket). Prefer `--stale`.
    """
    if stale == bool(mail_ids):
        raise InvalidInput("give --stale or IDs with --queue")
    if mail_ids and queue is None:
        raise InvalidInput("IDs need --queue inbound or --queue outbound (both number "
                           "their mail from 1)")
    now = utcnow()
    released: dict[str, list[int]] = {}
    with context.app().db.write() as session:
        if stale:
            by_queue: dict[str, list[int]] = {}
            for lease in held_leases(session, now, stale_only=True):
                by_queue.setdefault(lease.queue, []).append(lease.id)
            for name, ids in by_queue.items():
                released[name] = release_leases(session, name, ids, now)
        else:
            assert queue is not None
            released[queue] = release_leases(session, queue, list(mail_ids), now)
            missing = sorted(set(mail_ids) - set(released[queue]))
            if missing:
                raise NotFound(f"not leased {queue} mail: {', '.join(map(str, missing))} "
                               "(nothing was released)")
    total = sum(len(ids) for ids in released.values())
    listed = "; ".join(f"{name} {', '.join(map(str, ids))}"
                       for name, ids in sorted(released.items()) if ids)
    click.echo(f"released {total} lease(s)" + (f": {listed}" if listed else ""), err=True)
