"""Waiting for the customer (issue #16 item 5): a pending ticket reminds its customer after
N days and is closed after M days with one mail; a customer reply ends the wait; off by
default. Driven by `ticketgw ingest`, `ticket set` and `sla check --as-of` on SQLite and
PostgreSQL; the mails are read back from the outbox (`outbox show --raw`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_config
from tests.integration.tickets.test_staff_by_mail import Cli, ingest, message, reply_to, text_of

MAX = "max.mustermann@acme.example"
ANNA = "anna.agent@example.com"

QUEUE = f"""
[[queue]]
id = "servicedesk"
from = "Service Desk <support@support.example.com>"
staff = ["{ANNA}"]
{{waiting}}

[[staff]]
email = "{ANNA}"
name = "Anna Agent"

[[template]]
id = "incident"
group = "incident"
name = {{{{ de = "Störung", en = "Incident" }}}}
addresses = ["incident@support.example.com"]
queue = "servicedesk"
"""


def desk_with(database_url: str, tmp_path: Path, run_cli: Any, waiting: str) -> Cli:
    config = write_config(tmp_path / "ticketgw.toml", database_url,
                          extra=QUEUE.format(waiting=waiting))
    cli = Cli(run_cli, config)
    cli("db", "upgrade")
    cli("customer", "add", "mmuster", MAX, "--name", "Max Mustermann", "--lang", "en")
    return cli


@pytest.fixture
def desk(database_url: str, tmp_path: Path, run_cli: Any) -> Cli:
    return desk_with(database_url, tmp_path, run_cli,
                     "pending_reminder_days = 3\npending_close_days = 7")


def pending_ticket(cli: Cli, title: str) -> tuple[str, datetime, str]:
    """A new ticket set to pending by staff; its number, when it went pending, and the
    customer's reply address."""
    entry = ingest(cli, message(f"Max Mustermann <{MAX}>", "incident@support.example.com",
                                title, f"<{title.replace(' ', '-')}@acme.example>",
                                "Es geht nicht.\n"), "incident@support.example.com", MAX)
    number = str(entry["ticket"])
    [ack] = [m for e, _, m in cli.outbox() if e == "ack"]
    cli("ticket", "set", number, "--state", "pending")
    history = cli.ticket(number)["history"]
    since = datetime.fromisoformat([h for h in history if h["new"] == "pending"][-1]["at"])
    return number, since, reply_to(ack)


def check(cli: Cli, moment: datetime) -> list[dict[str, Any]]:
    return list(cli.json("sla", "check", "--as-of", moment.isoformat()))


def events(cli: Cli) -> list[str]:
    return list(reversed(cli.events()))


def test_reminded_once_then_closed_with_one_mail(desk: Cli) -> None:
    number, since, _ = pending_ticket(desk, "Drucker defekt")
    assert events(desk) == ["ack", "staff-notify", "status"]          # pending: status mail
    assert check(desk, since + timedelta(days=2, hours=23)) == []

    [reminder] = check(desk, since + timedelta(days=3, minutes=1))
    assert (reminder["ticket"], reminder["action"], reminder["recipients"]) == \
        (number, "pending-reminder", [MAX])
    assert check(desk, since + timedelta(days=4)) == []               # once
    [(recipients, mail)] = [(r, m) for e, r, m in desk.outbox() if e == "pending-reminder"]
    assert recipients == [MAX]
    assert "still waiting for your answer" in text_of(mail)            # Max reads English
    assert f"[Ticket#{number}]" in str(mail["Subject"])
    assert mail["Auto-Submitted"] == "auto-generated"
    assert reply_to(mail).startswith("support+r-")

    [closing] = check(desk, since + timedelta(days=7, minutes=1))
    assert (closing["action"], closing["recipients"]) == ("pending-closed", [MAX])
    assert check(desk, since + timedelta(days=8)) == []
    assert events(desk) == ["ack", "staff-notify", "status", "pending-reminder",
                            "pending-closed"]                          # no status mail too
    [(_, closed)] = [(r, m) for e, r, m in desk.outbox() if e == "pending-closed"]
    assert "we waited 7 days for your answer" in " ".join(text_of(closed).split())
    ticket = desk.ticket(number)
    assert ticket["state"] == "closed"
    waiting = [(h["actor"], h["field"], h["new"]) for h in ticket["history"]
               if h["actor"] == "system:customer-wait"]
    assert waiting == [("system:customer-wait", "pending-reminder", f"mailed to {MAX}"),
                       ("system:customer-wait", "state", "closed"),
                       ("system:customer-wait", "pending-closed",
                        f"after 7 days: mailed to {MAX}")]


def test_a_late_check_only_closes(desk: Cli) -> None:
    number, since, _ = pending_ticket(desk, "VPN bricht ab")
    assert [a["action"] for a in check(desk, since + timedelta(days=9))] == ["pending-closed"]
    assert events(desk).count("pending-reminder") == 0
    assert desk.ticket(number)["state"] == "closed"


def test_a_customer_reply_ends_the_wait(desk: Cli) -> None:
    number, since, customer_address = pending_ticket(desk, "Mail kommt nicht an")
    assert [a["action"] for a in check(desk, since + timedelta(days=3, hours=1))] == \
        ["pending-reminder"]
    reply = message(f"Max Mustermann <{MAX}>", customer_address, f"Re: [Ticket#{number}]",
                    "<answer@acme.example>", "Hier die Logdatei.\n")
    assert ingest(desk, reply, customer_address, MAX)["outcome"] == "appended"
    ticket = desk.ticket(number)
    assert ticket["state"] == "open"
    changes = [(h["actor"], h["new"]) for h in ticket["history"] if h["field"] == "state"]
    assert changes[-1] == (f"mail:{MAX}", "open")
    assert events(desk).count("status") == 1                          # only pending's
    assert check(desk, since + timedelta(days=30)) == []
    assert desk.ticket(number)["state"] == "open"

    # pending again later: a new wait with a reminder of its own
    desk("ticket", "set", number, "--state", "pending")
    again = datetime.fromisoformat([h for h in desk.ticket(number)["history"]
                                    if h["new"] == "pending"][-1]["at"])
    assert [a["action"] for a in check(desk, again + timedelta(days=3, hours=1))] == \
        ["pending-reminder"]


def test_off_by_default(database_url: str, tmp_path: Path, run_cli: Any) -> None:
    cli = desk_with(database_url, tmp_path, run_cli, "")
    number, since, _ = pending_ticket(cli, "Drucker defekt")
    assert check(cli, since + timedelta(days=365)) == []
    assert cli.ticket(number)["state"] == "pending"
    assert "pending-reminder" not in events(cli)


def test_participants_learn_of_the_close_by_a_status_mail(desk: Cli) -> None:
    """The customer gets `pending-closed` instead of the status mail; a participant, whom
    the waiting was not about, gets the status mail as on any other close."""
    berta = "berta.boss@acme.example"
    opening = message(f"Max Mustermann <{MAX}>", "incident@support.example.com",
                      "Drucker defekt", "<cc-wait@acme.example>", "Es geht nicht.\n")
    opening["Cc"] = f"Berta Boss <{berta}>"
    number = str(ingest(desk, opening, "incident@support.example.com", MAX)["ticket"])
    desk("ticket", "set", number, "--state", "pending")
    since = datetime.fromisoformat([h for h in desk.ticket(number)["history"]
                                    if h["new"] == "pending"][-1]["at"])
    before = len(desk.events())
    [closing] = check(desk, since + timedelta(days=7, minutes=1))
    assert (closing["action"], closing["recipients"]) == ("pending-closed", [MAX])
    closed = desk.outbox()[before:]
    assert sorted((e, r) for e, r, _ in closed) == [("pending-closed", [MAX]),
                                                    ("status", [berta])]
    [status] = [m for e, _, m in closed if e == "status"]
    assert str(status["Subject"]).startswith("Your ticket has been closed")  # in Max's language
    assert check(desk, since + timedelta(days=8)) == []
    assert len(desk.events()) == before + 2
