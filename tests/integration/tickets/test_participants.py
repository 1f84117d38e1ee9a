"""Participants of a ticket (issue #16 item 2), driven through `ticketgw ingest` as the
MTA pipe runs it, with our border MTA's Authentication-Results (`authserv_id` set) and the
CLI to look: the Cc of the opening mail, colleagues of the customer's organisation, `#cc`
from staff, and strangers and forged participants who stay outside. docs/admin.md,
"Participants"."""

from __future__ import annotations

import re
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.integration.smtp_helpers import DESK_WITH_STAFF
from tests.integration.tickets.test_staff_by_mail import (
    ANNA,
    MAX,
    STAFF_PASS,
    Cli,
    dmarc,
    ingest,
    message,
    reply_to,
    served,
    smtp,
    text_of,
    to,
    vouched_desk,
)
from tests.serve_helpers import tickets_titled

__all__ = ["served"]      # the fixture of the staff-trust tests: `ticketgw serve --demo`

BOSS = "berta.boss@acme.example"            # Max's manager, in Cc of his first mail
ERIKA = "erika.kollegin@acme.example"       # a registered colleague of Max (organisation acme)
STRANGER = "mallory@elsewhere.example"
INCIDENT = "incident@support.example.com"


def desk(database_url: str, tmp_path: Path, run_cli: Any, participants: str | None) -> Cli:
    """The staff desk with `authserv_id` set, the queue's `participants` as given (None: the
    default), Max and his colleague Erika registered in organisation acme."""
    extra = DESK_WITH_STAFF
    if participants is not None:
        extra = extra.replace('staff = ["', f'participants = "{participants}"\nstaff = ["', 1)
    cli = vouched_desk(run_cli, database_url, tmp_path, extra=extra)
    cli("customer", "add", "ekollegin", ERIKA, "--name", "Erika Kollegin", "--org", "acme")
    return cli


def open_ticket(cli: Cli, cc: str) -> tuple[str, str, str]:
    """Max opens a ticket with `cc` in Cc; its number, the customers' reply address and the
    staff reply address."""
    first = message(f"Max Mustermann <{MAX}>", INCIDENT, "Drucker defekt", "<p1@acme.example>",
                    "Er druckt nicht.\n", Authentication_Results=dmarc("pass"))
    first["Cc"] = cc
    entry = ingest(cli, first, INCIDENT, MAX)
    assert entry["outcome"] == "created", entry
    number = str(entry["ticket"])
    [ack] = [m for e, _, m in cli.outbox() if e == "ack"]
    [notice] = [m for e, _, m in cli.outbox() if e == "staff-notify"]
    return number, reply_to(ack), reply_to(notice)


def staff_answer(cli: Cli, staff_address: str, message_id: str, body: str) -> dict[str, Any]:
    mail = message(f"Anna Agent <{ANNA}>", staff_address, "Re: Drucker defekt", message_id,
                   body, Authentication_Results=STAFF_PASS)
    return ingest(cli, mail, staff_address, ANNA)


def participants(cli: Cli, number: str) -> list[str]:
    return [p["address"] for p in cli.ticket(number)["participants"]]


def mails(cli: Cli, event: str) -> list[tuple[list[str], EmailMessage]]:
    return [(r, m) for e, r, m in cli.outbox() if e == event]


@pytest.fixture
def cc_desk(database_url: str, tmp_path: Path, run_cli: Any) -> Cli:
    return desk(database_url, tmp_path, run_cli, None)        # the default: "cc"


def test_cc_of_the_opening_mail_participates_and_strangers_stay_outside(cc_desk: Cli) -> None:
    cli = cc_desk
    number, customer_address, staff_address = open_ticket(
        cli, f"Berta Boss <{BOSS}>, noreply@acme.example, {INCIDENT}, {ANNA}, "
             "postmaster@acme.example")
    assert participants(cli, number) == [BOSS]         # no own, staff or role address
    shown = cli("ticket", "show", number).stdout
    assert f"participant: Berta Boss <{BOSS}>   (cc, added by mail:{MAX})" in shown
    assert [r for r, _ in mails(cli, "ack")] == [[MAX]]      # the ack is the opener's only

    entry = staff_answer(cli, staff_address, "<a1@example.com>", "Wir tauschen den Toner.\n")
    assert "answer sent to the customer" in entry["reason"], entry
    answers = mails(cli, "staff-answer")
    assert sorted(r[0] for r, _ in answers) == sorted([MAX, BOSS])
    boss_answer = next(m for r, m in answers if r == [BOSS])
    assert "Wir tauschen den Toner." in text_of(boss_answer)
    assert reply_to(boss_answer) == customer_address   # her reply threads to the ticket
    assert staff_address not in boss_answer.as_string()

    reply = message(f"Berta Boss <{BOSS}>", customer_address, str(boss_answer["Subject"]),
                    "<b1@acme.example>", "Bitte bis Freitag.\n",
                    Authentication_Results=dmarc("pass"),
                    In_Reply_To=str(boss_answer["Message-ID"]))
    entry = ingest(cli, reply, customer_address, BOSS)
    assert (entry["outcome"], entry["ticket"]) == ("appended", number), entry
    assert "sender is participant" in entry["reason"]
    assert cli.ticket(number)["articles"][-1]["body"].startswith("Bitte bis Freitag.")

    forged = message(f"Berta Boss <{BOSS}>", customer_address, f"Re: [Ticket#{number}]",
                     "<b2@evil.example>", "Neue Bankverbindung anbei.\n",
                     Authentication_Results=dmarc("fail"))
    entry = ingest(cli, forged, customer_address, "bounce@evil.example")
    assert entry["outcome"] == "created" and entry["ticket"] != number, entry
    assert f"not appended as the participant of ticket {number}" in entry["reason"]

    stranger = message(f"Mallory <{STRANGER}>", customer_address, f"Re: [Ticket#{number}]",
                       "<s1@elsewhere.example>", "Ich mische mich ein.\n")
    entry = ingest(cli, stranger, customer_address, STRANGER)   # as before: no subject
    assert (entry["outcome"], entry["rule"]) == ("rejected", "no-subject"), entry
    assert f"may not write to ticket {number}" in entry["reason"]
    colleague = message(f"Erika Kollegin <{ERIKA}>", customer_address, f"Re: [Ticket#{number}]",
                        "<e1@acme.example>", "Bei mir auch.\n",
                        Authentication_Results=dmarc("pass"))
    entry = ingest(cli, colleague, customer_address, ERIKA)    # "cc": a colleague is no one
    assert (entry["outcome"], entry["rule"]) == ("rejected", "no-subject"), entry
    assert participants(cli, number) == [BOSS]
    assert len(cli.ticket(number)["articles"]) == 3         # Max, Anna's answer, Berta


def test_cc_commands_add_and_remove_participants_all_or_nothing(cc_desk: Cli) -> None:
    cli = cc_desk
    number, _, staff_address = open_ticket(cli, f"Berta Boss <{BOSS}>")

    entry = staff_answer(cli, staff_address, "<c1@example.com>",
                         "#cc add Carla <carla@partner.example>\n#cc remove noreply@x.example\n"
                         "Ich nehme Carla dazu.\n")
    assert "nothing carried out" in entry["reason"], entry
    assert participants(cli, number) == [BOSS]
    [(_, failed)] = mails(cli, "command-failed")
    assert "noreply@x.example is not a participant" in text_of(failed)

    entry = staff_answer(cli, staff_address, "<c2@example.com>",
                         "#cc add support@support.example.com\nText\n")
    assert "one of our own addresses" in entry["reason"], entry
    entry = staff_answer(cli, staff_address, "<c3@example.com>",
                         "#cc add Carla <carla@partner.example>\n"
                         f"#cc remove {BOSS}\nIch nehme Carla dazu.\n")
    assert "#cc add carla@partner.example; #cc remove" in entry["reason"], entry
    assert participants(cli, number) == ["carla@partner.example"]
    history = [(h["actor"], h["old"], h["new"]) for h in cli.ticket(number)["history"]
               if h["field"] == "participant"]
    assert history == [(f"mail:{MAX}", None, BOSS),
                       (f"staff:{ANNA}", None, "carla@partner.example"),
                       (f"staff:{ANNA}", BOSS, None)]
    latest = [r for r, _ in mails(cli, "staff-answer")]
    assert sorted(latest) == [["carla@partner.example"], [MAX]]

    cli("ticket", "set", number, "--state", "closed")
    assert sorted(r for r, _ in mails(cli, "status")) == [["carla@partner.example"], [MAX]]


def test_participant_cannot_command(cc_desk: Cli) -> None:
    """A participant's mail to the staff reply address is no staff mail: the address is a
    secret they never see, and even with it, a participant is not staff."""
    cli = cc_desk
    number, customer_address, staff_address = open_ticket(cli, f"Berta Boss <{BOSS}>")
    for address in (customer_address, staff_address):
        mail = message(f"Berta Boss <{BOSS}>", address, f"Re: [Ticket#{number}]",
                       f"<x-{address[:12]}@acme.example>", "#state closed\nErledigt.\n",
                       Authentication_Results=dmarc("pass"))
        entry = ingest(cli, mail, address, BOSS)
        assert (entry["outcome"], entry["ticket"]) == ("appended", number), entry
    assert cli.ticket(number)["state"] != "closed"
    assert not mails(cli, "staff-answer")


def test_organisation_colleague_who_replies_becomes_a_participant(
        database_url: str, tmp_path: Path, run_cli: Any) -> None:
    cli = desk(database_url, tmp_path, run_cli, "organisation")
    number, _, staff_address = open_ticket(cli, f"Berta Boss <{BOSS}>")
    assert participants(cli, number) == [BOSS]          # "organisation" includes "cc"
    colleague = message(f"Erika Kollegin <{ERIKA}>", INCIDENT, f"Re: [Ticket#{number}]",
                        "<e1@acme.example>", "Bei mir druckt er auch nicht.\n",
                        Authentication_Results=dmarc("pass"))
    entry = ingest(cli, colleague, INCIDENT, ERIKA)
    assert (entry["outcome"], entry["rule"], entry["ticket"]) == \
        ("appended", "subject-tag", number), entry
    assert f"{ERIKA} is now a participant" in entry["reason"]
    assert participants(cli, number) == [BOSS, ERIKA]
    staff_answer(cli, staff_address, "<o1@example.com>", "Der Drucker wird getauscht.\n")
    assert sorted(r[0] for r, _ in mails(cli, "staff-answer")) == sorted([MAX, BOSS, ERIKA])

    stranger = message(f"Mallory <{STRANGER}>", INCIDENT, f"Re: Drucker [Ticket#{number}]",
                       "<s1@elsewhere.example>", "Ich auch.\n")
    entry = ingest(cli, stranger, INCIDENT, STRANGER)
    assert entry["outcome"] == "created" and entry["ticket"] != number, entry


def test_queue_without_participants_adds_nobody(database_url: str, tmp_path: Path,
                                                run_cli: Any) -> None:
    cli = desk(database_url, tmp_path, run_cli, "none")
    number, customer_address, staff_address = open_ticket(cli, f"Berta Boss <{BOSS}>")
    assert participants(cli, number) == []
    reply = message(f"Berta Boss <{BOSS}>", customer_address, f"Re: Drucker [Ticket#{number}]",
                    "<n1@acme.example>", "Und?\n", Authentication_Results=dmarc("pass"))
    entry = ingest(cli, reply, customer_address, BOSS)
    assert entry["outcome"] == "created" and entry["ticket"] != number, entry
    entry = staff_answer(cli, staff_address, "<n2@example.com>", f"#cc add {BOSS}\nText\n")
    assert 'participants = "none"' in entry["reason"], entry
    assert participants(cli, number) == []


def test_serve_cc_manager_gets_the_staff_answer_and_staff_get_the_list(
        served: Any) -> None:
    """Through SMTP into a real `ticketgw serve --demo` (shipped defaults: participants
    "cc", `authserv_id` empty): the Cc'd manager gets Anna's answer as a mail of her own and
    her reply joins the ticket; Anna's `list` mail is answered with the overview, whose
    staff reply address works like a notification's."""
    port, config, cli, outbox = served
    first = message(f"Max Mustermann <{MAX}>", "stoerung@support.example.com",
                    "Beamer im Saal", "<beamer@acme.example>", "Kein Bild.\n")
    first["Cc"] = f"Berta Boss <{BOSS}>"
    smtp(port, first, MAX, "stoerung@support.example.com")
    [ticket] = tickets_titled(config, "Beamer im Saal")
    number = str(ticket["number"])
    notice = outbox.wait_for(lambda m: to(m) == ANNA and f"[Ticket#{number}]" in str(m["Subject"]))
    assert participants(cli, number) == [BOSS]

    smtp(port, message(f"Anna Agent <{ANNA}>", "support@support.example.com", "list",
                       "<list@example.com>", "\n"), ANNA, "support@support.example.com")
    listed = outbox.wait_for(lambda m: to(m) == ANNA and "Offene Tickets" in str(m["Subject"]))
    [address] = [a for a in re.findall(r"Antworten an: (\S+)", text_of(listed))
                 if a == reply_to(notice)]
    assert "Beamer im Saal" in text_of(listed) and number in text_of(listed)

    smtp(port, message(f"Anna Agent <{ANNA}>", address, "Re: Offene Tickets",
                       "<beamer-answer@example.com>", "Ein Techniker kommt um 10 Uhr.\n"),
         ANNA, address)
    boss = outbox.wait_for(lambda m: to(m) == BOSS and "Techniker" in text_of(m))
    outbox.wait_for(lambda m: to(m) == MAX and "Techniker" in text_of(m))
    reply = message(f"Berta Boss <{BOSS}>", reply_to(boss), str(boss["Subject"]),
                    "<beamer-boss@acme.example>", "Danke, passt.\n")
    smtp(port, reply, BOSS, reply_to(boss))
    entry = cli.outcome("<beamer-boss@acme.example>")
    assert (entry["outcome"], entry["ticket"]) == ("appended", number), entry
