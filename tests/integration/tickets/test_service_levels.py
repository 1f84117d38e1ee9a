"""Service levels (issue #16 item 3) the way users drive them: mail in through
`ticketgw ingest`, `ticketgw ticket set`, and `ticketgw sla check --as-of` for the clock,
on SQLite and PostgreSQL. The mails are read back from the outbox as the transport gets
them (`outbox show --raw`). A ticket's creation time is set in its row where a test needs a
fixed moment; a priority change then recomputes its due times from it."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import create_engine, select, update

from gateway.store.models import Ticket, table_of
from gateway.tickets.business_time import (
    Calendar,
    add_business_time,
    business_time_between,
    parse_hours,
)
from tests.conftest import write_config
from tests.integration.tickets.test_staff_by_mail import (
    Cli,
    ingest,
    message,
    reply_to,
    smtp,
    text_of,
    to,
)
from tests.maildir import Maildir
from tests.serve_helpers import free_port, serve_config, serving, tickets_titled

MAX = "max.mustermann@acme.example"
ANNA = "anna.agent@example.com"        # German
BEN = "ben.brown@example.com"          # English
LEAD = "lead@example.com"
BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = Calendar(BERLIN, parse_hours("mon-fri 08:00-17:00"))
_ticket = table_of(Ticket)

CONFIG = f"""
[tickets]
timezone = "Europe/Berlin"
holidays = ["2026-12-24"]

[[queue]]
id = "servicedesk"
from = "Service Desk <support@support.example.com>"
staff = ["{ANNA}", "{BEN}"]
hours = "mon-fri 08:00-17:00"
escalation = "{LEAD}"

[[staff]]
email = "{ANNA}"
name = "Anna Agent"
language = "de"

[[staff]]
email = "{BEN}"
name = "Ben Brown"
language = "en"

[[template]]
id = "incident"
group = "incident"
name = {{ de = "Störung", en = "Incident" }}
addresses = ["incident@support.example.com"]
queue = "servicedesk"
sla = {{ first_response = "4h", solution = "16h", warn_before = "1h" }}
sla_by_priority = {{ 5 = {{ first_response = "1h" }} }}
"""


def berlin(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN)


def at(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@pytest.fixture
def desk(database_url: str, tmp_path: Path, run_cli: Any) -> Cli:
    config = write_config(tmp_path / "ticketgw.toml", database_url, extra=CONFIG)
    cli = Cli(run_cli, config)
    cli("db", "upgrade")
    return cli


def new_ticket(cli: Cli, title: str) -> str:
    entry = ingest(cli, message(f"Max Mustermann <{MAX}>", "incident@support.example.com",
                                title, f"<{title.replace(' ', '-')}@acme.example>",
                                "Es geht nicht.\n"), "incident@support.example.com", MAX)
    assert entry["outcome"] == "created", entry
    return str(entry["ticket"])


def created_at(database_url: str, number: str, moment: datetime) -> None:
    """The ticket was created at `moment` (the row, as if the mail had arrived then)."""
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(update(_ticket).where(_ticket.c.number == number)
                           .values(created=moment))
    engine.dispose()


def check(cli: Cli, as_of: str, *extra: str) -> list[dict[str, Any]]:
    return list(cli.json("sla", "check", "--as-of", as_of, *extra))


def mails(cli: Cli, event: str) -> list[tuple[list[str], Any]]:
    return [(recipients, mail) for e, recipients, mail in cli.outbox() if e == event]


def test_a_new_ticket_knows_its_due_times_and_the_notice_shows_them(desk: Cli) -> None:
    number = new_ticket(desk, "Drucker defekt")
    ticket = desk.ticket(number)
    created = at(ticket["created"])
    assert created is not None
    assert at(ticket["first_response_due"]) == add_business_time(created, timedelta(hours=4),
                                                                 OFFICE)
    assert at(ticket["solution_due"]) == add_business_time(created, timedelta(hours=16), OFFICE)
    listed = desk.json("ticket", "list")[0]
    assert listed["first_response_due"] == ticket["first_response_due"]
    assert listed["next_due"] == ticket["first_response_due"]

    notices = {recipients[0]: mail for recipients, mail in mails(desk, "staff-notify")}
    due = at(ticket["first_response_due"])
    assert due is not None
    local = due.astimezone(BERLIN)
    assert "Erste Antwort fällig" in text_of(notices[ANNA])
    assert local.strftime("%d.%m.%Y, %H:%M Uhr") in text_of(notices[ANNA])
    assert "First response due" in text_of(notices[BEN])
    assert local.strftime("%Y-%m-%d %H:%M") in text_of(notices[BEN])
    assert "first response due:" in desk("ticket", "show", number).stdout


def test_reminders_then_escalations_once_each(desk: Cli, database_url: str) -> None:
    number = new_ticket(desk, "VPN bricht ab")
    created_at(database_url, number, berlin("2026-11-30T09:00"))     # a Monday
    desk("ticket", "set", number, "--priority", "5")                  # recomputes: 1h
    ticket = desk.ticket(number)
    assert at(ticket["first_response_due"]) == berlin("2026-11-30T10:00")
    assert at(ticket["solution_due"]) == berlin("2026-12-01T16:00")   # 8h Monday, 8h Tuesday

    assert check(desk, "2026-11-30T08:30") == []                      # 1.5h before: too early
    dry = check(desk, "2026-11-30T09:15", "--dry-run")
    assert [(a["action"], a["target"]) for a in dry] == [("sla-reminder", "first-response")]
    assert mails(desk, "sla-reminder") == []                          # a dry run sends nothing

    [reminder] = check(desk, "2026-11-30T09:15")
    assert (reminder["ticket"], reminder["action"], reminder["target"]) == \
        (number, "sla-reminder", "first-response")
    assert reminder["recipients"] == [ANNA, BEN]
    sent = {recipients[0]: mail for recipients, mail in mails(desk, "sla-reminder")}
    assert set(sent) == {ANNA, BEN}
    assert "erste Antwort an den Kunden" in text_of(sent[ANNA])        # each in their language
    assert "30.11.2026, 10:00 Uhr" in text_of(sent[ANNA])
    assert "first response to the customer" in text_of(sent[BEN])
    assert f"[Ticket#{number}]" in str(sent[BEN]["Subject"])
    assert sent[BEN]["Auto-Submitted"] == "auto-generated"
    assert reply_to(sent[BEN]).startswith("support+s-")                # the staff address
    assert check(desk, "2026-11-30T09:20") == []                      # not twice

    [escalation] = check(desk, "2026-11-30T10:05")
    assert (escalation["action"], escalation["recipients"]) == ("sla-escalation", [LEAD])
    [(recipients, escalated)] = mails(desk, "sla-escalation")
    assert recipients == [LEAD]
    assert "wurde verpasst" in text_of(escalated)                     # the queue's language
    assert check(desk, "2026-11-30T10:06") == []

    # the solution: reminded an hour before Tuesday 16:00, escalated after
    assert [(a["action"], a["target"]) for a in check(desk, "2026-12-01T15:10")] == \
        [("sla-reminder", "solution")]
    assert [(a["action"], a["target"]) for a in check(desk, "2026-12-01T16:01")] == \
        [("sla-escalation", "solution")]
    assert check(desk, "2026-12-02T09:00") == []
    history = [(h["actor"], h["field"], h["new"].split(" ")[0])
               for h in desk.ticket(number)["history"] if h["field"].startswith("sla-")]
    assert history == [("system:sla", "sla-reminder", "first-response"),
                       ("system:sla", "sla-escalation", "first-response"),
                       ("system:sla", "sla-reminder", "solution"),
                       ("system:sla", "sla-escalation", "solution")]
    overdue = desk.json("ticket", "list", "--overdue")
    assert [t["number"] for t in overdue] == [number]


def test_a_late_check_escalates_without_reminding(desk: Cli, database_url: str) -> None:
    number = new_ticket(desk, "Mail kommt nicht an")
    created_at(database_url, number, berlin("2026-11-30T09:00"))
    desk("ticket", "set", number, "--priority", "4")                  # 4h: due 13:00
    assert [(a["action"], a["target"]) for a in check(desk, "2026-11-30T14:00")] == \
        [("sla-escalation", "first-response")]
    assert mails(desk, "sla-reminder") == []


def test_a_staff_answer_meets_the_first_response_an_internal_note_does_not(
        desk: Cli, database_url: str) -> None:
    number = new_ticket(desk, "Passwort abgelaufen")
    created_at(database_url, number, berlin("2026-11-30T09:00"))
    desk("ticket", "set", number, "--priority", "4")
    [(_, notice)] = [(r, m) for r, m in mails(desk, "staff-notify") if r == [ANNA]]
    staff_address = reply_to(notice)

    note = message(f"Anna Agent <{ANNA}>", staff_address, f"Re: [Ticket#{number}]",
                   "<note@example.com>", "#internal\nRuft morgen an.\n")
    assert ingest(desk, note, staff_address, ANNA)["outcome"] == "appended"
    assert desk.ticket(number)["first_response_at"] is None

    answer = message(f"Anna Agent <{ANNA}>", staff_address, f"Re: [Ticket#{number}]",
                     "<answer@example.com>", "Guten Tag, wir setzen es zurück.\n")
    assert ingest(desk, answer, staff_address, ANNA)["outcome"] == "appended"
    ticket = desk.ticket(number)
    assert ticket["first_response_at"] is not None
    # long after the first response was due: nothing about it, the solution is not due yet
    assert check(desk, "2026-11-30T16:00") == []
    assert [a["target"] for a in check(desk, "2026-12-01T16:30")] == ["solution"]
    assert all(h["new"].startswith("solution") for h in desk.ticket(number)["history"]
               if h["field"].startswith("sla-"))
    listed = desk.json("ticket", "list", "--sort", "due")[0]
    assert listed["next_due"] == ticket["solution_due"]              # first response met


def test_pending_stops_the_clock(desk: Cli, database_url: str) -> None:
    number = new_ticket(desk, "Drucker offline")
    created_at(database_url, number, berlin("2026-11-30T09:00"))
    desk("ticket", "set", number, "--priority", "4")                  # due 13:00
    desk("ticket", "set", number, "--state", "pending")
    assert check(desk, "2026-11-30T14:00") == []                      # stopped: nothing sent
    assert desk.json("ticket", "list", "--overdue") == []

    # it went pending at 10:00 on the Monday; leaving pending moves the due times by the
    # working time it stood
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(update(_ticket).where(_ticket.c.number == number)
                           .values(sla_paused_at=berlin("2026-11-30T10:00")))
    desk("ticket", "set", number, "--state", "open")
    with engine.begin() as connection:
        paused_at, paused = connection.execute(
            select(_ticket.c.sla_paused_at, _ticket.c.sla_paused_seconds)
            .where(_ticket.c.number == number)).one()
    engine.dispose()
    ticket = desk.ticket(number)
    left_pending = datetime.fromisoformat(
        [h for h in ticket["history"] if h["field"] == "state"][-1]["at"])
    assert paused_at is None
    assert paused == int(business_time_between(berlin("2026-11-30T10:00"), left_pending,
                                               OFFICE).total_seconds())
    assert paused >= 7 * 3600                               # at least the rest of that Monday
    assert at(ticket["first_response_due"]) == add_business_time(
        berlin("2026-11-30T09:00"), timedelta(hours=4, seconds=paused), OFFICE)


def test_wrong_as_of_is_explained(desk: Cli, run_cli: Any) -> None:
    result = run_cli("--config", str(desk.config), "sla", "check", "--as-of", "morgen")
    assert result.exit_code != 0
    assert "is not a date and time" in result.output
    result = run_cli("--config", str(desk.config), "ticket", "list", "--due-within", "4 hours")
    assert result.exit_code != 0 and "not a duration" in result.output


def test_serve_delivers_reminder_and_escalation_into_the_maildir(
        database_url: str, tmp_path: Path, run_cli: Any) -> None:
    """Through a real `ticketgw serve` (its own deadline check runs every minute beside the
    CLI's, as a second instance would): the mails reach the Maildir once each, with the
    right recipients and languages. The ticket's times lie in the future, so the service's
    own check, which uses the real clock, finds nothing due before the CLI's does."""
    smtp_port, web_port = free_port(), free_port()
    config = serve_config(tmp_path / "ticketgw.toml", database_url, smtp_port=smtp_port,
                          web_port=web_port, extra=CONFIG)
    cli = Cli(run_cli, config)
    cli("db", "upgrade")
    with serving(["--config", str(config), "serve"], tmp_path,
                 f"http://127.0.0.1:{web_port}/healthz"):
        outbox = Maildir(tmp_path / "var" / "outbox")
        smtp(smtp_port, message(f"Max Mustermann <{MAX}>", "incident@support.example.com",
                                "Server down", "<down@acme.example>", "Nichts geht.\n"),
             MAX, "incident@support.example.com")
        [ticket] = tickets_titled(config, "Server down")
        number = str(ticket["number"])
        created_at(database_url, number, berlin("2027-01-04T09:00"))    # a Monday ahead
        cli("ticket", "set", number, "--priority", "5")                  # due 10:00

        assert [a["recipients"] for a in check(cli, "2027-01-04T09:15")] == [[ANNA, BEN]]
        anna = outbox.wait_for(lambda m: to(m) == ANNA and "Fällig" in str(m["Subject"]))
        ben = outbox.wait_for(lambda m: to(m) == BEN and "Due" in str(m["Subject"]))
        assert "04.01.2027, 10:00 Uhr" in text_of(anna)
        assert "2027-01-04 10:00" in text_of(ben)
        assert [a["recipients"] for a in check(cli, "2027-01-04T10:01")] == [[LEAD]]
        lead = outbox.wait_for(lambda m: to(m) == LEAD)
        assert str(lead["Subject"]).startswith("Verpasst: Erste Antwort")
        assert check(cli, "2027-01-04T10:02") == []
        cli.outcome("<down@acme.example>")
        sla_mails = [m for m in outbox.messages() if str(m["Subject"]).startswith(
            ("Fällig", "Due", "Verpasst", "Missed"))]
        assert sorted(to(m) for m in sla_mails) == sorted([ANNA, BEN, LEAD])


def test_the_assignee_is_reminded_first_and_named_in_the_escalation(
        desk: Cli, database_url: str) -> None:
    number = new_ticket(desk, "Laptop kaputt")
    created_at(database_url, number, berlin("2026-11-30T09:00"))
    desk("ticket", "set", number, "--priority", "4")                  # due 13:00
    [(_, notice)] = [(r, m) for r, m in mails(desk, "staff-notify") if r == [ANNA]]
    staff_address = reply_to(notice)
    take = message(f"Anna Agent <{ANNA}>", staff_address, f"Re: [Ticket#{number}]",
                   "<assign@example.com>", f"#assign {BEN}\n#internal\nBen übernimmt.\n")
    assert ingest(desk, take, staff_address, ANNA)["outcome"] == "appended"
    assert [a["recipients"] for a in check(desk, "2026-11-30T12:30")] == [[BEN, ANNA]]
    check(desk, "2026-11-30T13:05")
    [(recipients, escalated)] = mails(desk, "sla-escalation")
    assert recipients == [LEAD]
    assert f"Zuständig:  {BEN}" in text_of(escalated)


def test_ticket_list_sorts_and_filters_by_due_time(desk: Cli, database_url: str) -> None:
    later = new_ticket(desk, "Neuer Bildschirm")
    created_at(database_url, later, berlin("2030-01-07T09:00"))       # far ahead
    desk("ticket", "set", later, "--priority", "4")
    overdue = new_ticket(desk, "Altes Problem")
    created_at(database_url, overdue, berlin("2026-11-30T09:00"))
    desk("ticket", "set", overdue, "--priority", "4")
    no_target = new_ticket(desk, "Ohne Vorlage")
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(update(_ticket).where(_ticket.c.number == no_target).values(
            first_response_due=None, solution_due=None))
    engine.dispose()

    by_due = [t["number"] for t in desk.json("ticket", "list", "--sort", "due")]
    assert by_due == [overdue, later, no_target]                      # none last
    assert [t["number"] for t in desk.json("ticket", "list", "--overdue")] == [overdue]
    assert [t["number"] for t in desk.json("ticket", "list", "--due-within", "4h")] == \
        [overdue]
    table = desk("ticket", "list", "--sort", "due").stdout
    assert "DUE" in table.splitlines()[0] and "2026-11-30 12:00" in table   # 13:00 Berlin
    desk("ticket", "set", overdue, "--state", "closed")
    assert desk.json("ticket", "list", "--overdue") == []              # the clock stopped


def test_recompute_after_the_targets_changed(desk: Cli, database_url: str) -> None:
    number = new_ticket(desk, "Altes Ticket")
    created_at(database_url, number, berlin("2026-11-30T09:00"))
    desk("ticket", "set", number, "--priority", "4")
    assert at(desk.ticket(number)["first_response_due"]) == berlin("2026-11-30T13:00")
    config = desk.config
    config.write_text(config.read_text().replace('first_response = "4h", solution = "16h"',
                                                 'first_response = "2h", solution = "16h"'))
    assert "recomputed for 1 tickets" in desk("sla", "recompute").stdout
    assert at(desk.ticket(number)["first_response_due"]) == berlin("2026-11-30T11:00")
