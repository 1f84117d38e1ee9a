"""Ticket commands: list, show, set."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import click

from gateway.cli.context import CliContext, pass_context
from gateway.cli.output import echo_json, echo_table, json_object_option, json_option
from gateway.errors import InvalidInput
from gateway.outbound import bouncing
from gateway.store.models import utcnow
from gateway.tickets.business_time import parse_duration
from gateway.tickets.queries import StateFilter, TicketSort, list_tickets, ticket_detail
from gateway.tickets.ticket import (
    PRIORITY_NAMES,
    State,
    find_ticket,
    parse_priority,
    parse_state,
    priority_label,
)


def register(cli: click.Group) -> None:
    cli.add_command(ticket)


@click.group()
def ticket() -> None:
    """Read and change tickets."""


@ticket.command("list")
@click.option("--state", "state_filter", type=click.Choice(["all", "open", "closed"]),
              default="all", show_default=True, help="open = every state but closed.")
@click.option("--queue", default=None, help="Only this queue id.")
@click.option("--customer", default=None, help="Only this customer's username.")
@click.option("--assignee", default=None, metavar="ADDRESS",
              help="Only tickets assigned to this staff address (#assign, #take).")
@click.option("--unassigned", is_flag=True, help="Only tickets nobody is assigned to.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--sort", type=click.Choice(["number", "due"]), default="number",
              show_default=True,
              help="number: newest first; due: the next service-level due time first.")
@click.option("--overdue", is_flag=True,
              help="Only new and open tickets whose next due time has passed.")
@click.option("--due-within", "due_within", default=None, metavar="DURATION",
              help="Only new and open tickets due within this time, e.g. 4h or 1d "
                   "(overdue ones included).")
@json_option
@pass_context
def ticket_list(context: CliContext, state_filter: str, queue: str | None,
                customer: str | None, assignee: str | None, unassigned: bool, limit: int,
                sort: str, overdue: bool, due_within: str | None, as_json: bool) -> None:
    """List tickets, newest first (or by due time: `--sort due`)."""
    if assignee and unassigned:
        raise click.UsageError("--assignee and --unassigned exclude each other")
    if overdue and due_within:
        raise InvalidInput("give --overdue or --due-within, not both")
    due_before = None
    if overdue or due_within:
        try:
            due_before = utcnow() + (parse_duration(due_within) if due_within else timedelta(0))
        except ValueError as exc:
            raise InvalidInput(f"--due-within: {exc}") from None
    app = context.app()
    with app.db.read() as session:
        rows = list_tickets(session, state=cast(StateFilter, state_filter), queue=queue,
                            customer=customer, assignee=assignee, unassigned=unassigned,
                            limit=limit, sort=cast(TicketSort, sort), due_before=due_before)
    if as_json:
        echo_json(rows)
        return
    echo_table([{**r, "customer": r["customer"] or r["contact"], "assignee": r["assignee"] or "-",
                 "created": r["created"][:16].replace("T", " "),
                 "due": (r["next_due"] or "")[:16].replace("T", " ")} for r in rows],
               ["number", "state", "priority", "queue", "customer", "assignee", "created", "due",
                "title"],
               empty="(no tickets)")


@ticket.command("show")
@click.argument("number")
@json_object_option
@pass_context
def ticket_show(context: CliContext, number: str, as_json: bool) -> None:
    """Show a ticket with its participants, articles and history."""
    app = context.app()
    with app.db.read() as session:
        detail = ticket_detail(session, number)
        dead = bouncing.dead_address(session, str(detail.get("contact") or ""))
    detail["contact_bouncing"] = dead.explanation() if dead else None
    if as_json:
        echo_json(detail)
        return
    _print_ticket(detail)


def _print_ticket(t: dict[str, Any]) -> None:
    click.secho(f"Ticket#{t['number']}  {t['title']}", bold=True)
    click.echo(f"state: {t['state']}   priority: {t['priority_label']}   queue: {t['queue']}"
               f"   template: {t['template'] or '-'}")
    click.echo(f"customer: {t['customer'] or '-'} <{t['contact']}>   created: {t['created']}")
    click.echo(f"assignee: {t['assignee'] or '-'}")
    if t["first_response_due"] or t["solution_due"]:
        answered = f" (met {t['first_response_at']})" if t["first_response_at"] else ""
        paused = f"   clock stopped since {t['sla_paused_at']}" if t["sla_paused_at"] else ""
        click.echo(f"first response due: {t['first_response_due'] or '-'}{answered}   "
                   f"solution due: {t['solution_due'] or '-'}{paused}")
    if t["contact_bouncing"]:
        click.secho(f"  ! {t['contact_bouncing']}: automatic mail to it is held back "
                    "(`ticketgw bounces`)", fg="yellow")
    for p in t["participants"]:
        name = f"{p['name']} " if p["name"] else ""
        click.echo(f"participant: {name}<{p['address']}>   ({p['source']}, added by "
                   f"{p['added_by']})")
    if t["guide_answers"] or t["guide_missing"]:
        click.echo("guide:")
    for key, value in t["guide_answers"].items():
        click.echo(f"  {key}: {value}")
    if t["guide_missing"]:
        click.secho(f"  still missing (required): {', '.join(t['guide_missing'])}", fg="yellow")
    for article in t["articles"]:
        flag = " [internal]" if article["internal"] else ""
        click.echo("")
        click.secho(f"--- {article['created'][:16]} {article['direction']} {article['channel']}"
                    f" {article['sender']}{flag}: {article['from']}", fg="cyan")
        if article["subject"]:
            click.echo(f"Subject: {article['subject']}")
        click.echo(article["body"].rstrip())
        for a in article["attachments"]:
            click.echo(f"  [attachment] {a['filename']} ({a['content_type']}, {a['size']} bytes)")
    click.echo("\nhistory:")
    for h in t["history"]:
        change = f"{h['old']} -> {h['new']}" if h["old"] is not None else h["new"]
        click.echo(f"  {h['at'][:19]}  {h['actor']}: {h['field']} {change}")


@ticket.command("set")
@click.argument("number")
@click.option("--state", default=None, help=f"One of {', '.join(s.value for s in State)}.")
@click.option("--priority", default=None,
              help="1-5 or a name: " + ", ".join(PRIORITY_NAMES.values()) + ".")
@pass_context
def ticket_set(context: CliContext, number: str, state: str | None, priority: str | None) -> None:
    """Change a ticket's state and/or priority (recorded in its history). The customer gets
    a status mail for the states the config announces (`[outbound] status_mail_states`)."""
    from gateway.tickets.actions import change_priority, change_state  # loads the renderer
    if state is None and priority is None:
        raise InvalidInput("nothing to change: give --state and/or --priority")
    new_state = parse_state(state) if state is not None else None      # validate both first
    new_priority = parse_priority(priority) if priority is not None else None
    app = context.app()
    with app.db.write() as session:
        found = find_ticket(session, number, for_update=True)
        assert found.id is not None
        if new_state is not None:
            changed = change_state(session, app.answering, found.id, new_state, actor="cli")
            click.echo(f"Ticket#{found.number}: state {found.state} -> {new_state.value}"
                       if changed else f"Ticket#{found.number}: state is {found.state} already")
        if new_priority is not None:
            changed = change_priority(session, app.settings, found.id, new_priority,
                                      actor="cli")
            old = priority_label(found.priority)
            click.echo(f"Ticket#{found.number}: priority {old} -> {priority_label(new_priority)}"
                       if changed else f"Ticket#{found.number}: priority is {old} already")
