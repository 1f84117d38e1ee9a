"""Answering the conversation guide by replying to the acknowledgment (issue #16 item 1):
mail through intake and the worker (and `ticketgw ingest`), on both databases; the answers
are checked in `ticket show`, the staff notice, the portal's ticket view and the outbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import App, build_app, prepare_database
from gateway.tickets.customers import NewCustomer, add_customer
from gateway.tickets.queries import ticket_detail
from tests.conftest import BASE_CONFIG, make_settings, write_config
from tests.integration.outbound.test_answers import deliver, mail, outbox

MAX = "max@acme.example"
GUIDE = [
    {"key": "system", "label": {"de": "Betroffenes System", "en": "Affected system"},
     "required": True},
    {"key": "reason", "label": {"de": "Grund", "en": "Reason"}, "required": True},
    {"key": "room", "label": {"de": "Raum", "en": "Room"}},
]


@pytest.fixture
def desk(database_url: str, tmp_path: Path) -> Iterator[App]:
    """The test desk whose incident template asks two required questions and one more;
    Max is a registered customer (German)."""
    templates = [{**BASE_CONFIG["template"][0], "guide": GUIDE}, BASE_CONFIG["template"][1]]
    app = build_app(make_settings(database_url, tmp_path / "data", template=templates))
    prepare_database(app, migrate=False)
    with app.db.write() as session:
        add_customer(session, NewCustomer("mmuster", MAX, "Max Muster", "acme", "de"))
    yield app
    app.close()


def text_of(message: Any) -> str:
    return str(message.get_body(("plain",)).get_content())


def reply(app: App, reply_address: str, message_id: str, body: str,
          sender: str = MAX, number: str = "") -> Any:
    [done] = deliver(app, mail(subject=f"Re: Drucker defekt [Ticket#{number}]", sender=sender,
                               to=reply_address, message_id=message_id, body=body),
                     recipient=reply_address, sender=sender)
    return done


def detail(app: App, number: str) -> dict[str, Any]:
    with app.db.read() as session:
        return ticket_detail(session, number)


def test_answers_by_reply_are_recorded_shown_and_confirmed_once(desk: App) -> None:
    app = desk
    [opened] = deliver(app, mail(message_id="<g1@acme>", body="Der Drucker druckt nicht.\n",
                                 Cc="kollegin@acme.example"))
    number = str(opened.ticket_number)
    [(_, _, ack), _] = outbox(app)
    assert "Betroffenes System:" in text_of(ack) and "Grund:" in text_of(ack)
    address = str(ack["Reply-To"].addresses[0].addr_spec)
    assert detail(app, number)["guide_missing"] == ["system", "reason"]

    # numbered, in the order the acknowledgment asked; quoted lines never count
    first = reply(app, address, "<g2@acme>", "1. HP LaserJet 4250\n\n> Grund: zitiert\n",
                  number=number)
    assert first.outcome == "appended" and "guide answers recorded: system" in first.reason
    shown = detail(app, number)
    assert shown["guide_answers"] == {"system": "HP LaserJet 4250"}
    assert shown["guide_missing"] == ["reason"]
    assert shown["articles"][-1]["body"].startswith("1. HP LaserJet 4250")   # still an article
    notice = outbox(app)[-1]
    assert notice[0] == "staff-notify"
    assert "Betroffenes System: HP LaserJet 4250" in text_of(notice[2])
    assert "Gesprächsleitfaden" in text_of(notice[2])
    assert "guide-complete" not in [e for e, _, _ in outbox(app)]

    # a participant (in Cc of the first mail) may write to the ticket, not answer its guide
    other = reply(app, address, "<g3@acme>", "Grund: Umzug der Abteilung\n",
                  sender="kollegin@acme.example", number=number)
    assert other.outcome == "appended" and "guide" not in other.reason
    assert detail(app, number)["guide_missing"] == ["reason"]

    # an English label completes it; the answer given before is kept without "(neu)"
    done = reply(app, address, "<g4@acme>", "Affected system: HP 9999\nreason: Umzug ins 3. OG\n",
                 number=number)
    assert "guide answers recorded: reason" in done.reason
    assert "answered before, kept" in done.reason and "guide complete" in done.reason
    shown = detail(app, number)
    assert shown["guide_answers"] == {"system": "HP LaserJet 4250", "reason": "Umzug ins 3. OG"}
    assert shown["guide_missing"] == []
    completes = [(r, m) for e, r, m in outbox(app) if e == "guide-complete"]
    assert [r for r, _ in completes] == [(MAX,)]
    confirmation = completes[0][1]
    assert str(confirmation["Subject"]).startswith("Ihre Angaben sind vollständig")
    assert f"[Ticket#{number}]" in str(confirmation["Subject"])
    assert confirmation["Auto-Submitted"] == "auto-replied"
    assert "Grund: Umzug ins 3. OG" in text_of(confirmation)
    assert str(confirmation["From"].addresses[0].addr_spec) == "support@support.example.com"

    # a clear correction replaces an answer; no second confirmation
    corrected = reply(app, address, "<g5@acme>", "Betroffenes System (neu): HP 4350\n",
                      number=number)
    assert "guide answers recorded: system" in corrected.reason
    assert detail(app, number)["guide_answers"]["system"] == "HP 4350"
    assert [e for e, _, _ in outbox(app)].count("guide-complete") == 1
    changes = [(h["old"], h["new"]) for h in detail(app, number)["history"]
               if h["field"] == "guide"]
    assert changes == [(None, "system: HP LaserJet 4250"), (None, "reason: Umzug ins 3. OG"),
                       ("system: HP LaserJet 4250", "system: HP 4350")]


def test_automatic_replies_and_tickets_without_a_guide_record_nothing(desk: App) -> None:
    app = desk
    [opened] = deliver(app, mail(message_id="<h1@acme>"))
    address = str(outbox(app)[0][2]["Reply-To"].addresses[0].addr_spec)
    [auto] = deliver(app, mail(subject="Automatische Antwort: Drucker", to=address,
                               message_id="<h2@acme>", body="Grund: Urlaub\n",
                               Auto_Submitted="auto-replied"),
                     recipient=address, sender=MAX)
    assert auto.ticket_number == opened.ticket_number
    assert detail(app, str(opened.ticket_number))["guide_answers"] == {}
    [change] = deliver(app, mail(message_id="<h3@acme>", to="change@support.example.com"),
                       recipient="change@support.example.com")
    [change_ack] = [m for e, _, m in outbox(app)
                    if e == "ack" and f"[Ticket#{change.ticket_number}]" in str(m["Subject"])]
    change_address = str(change_ack["Reply-To"].addresses[0].addr_spec)
    done = reply(app, change_address, "<h4@acme>", "Grund: x\n1. y\n",
                 number=str(change.ticket_number))
    assert done.outcome == "appended" and "guide" not in done.reason


# -- through `ticketgw ingest`, in English ---------------------------------------------------

GUIDE_TOML = """
[[queue]]
id = "servicedesk"
from = "Service Desk <support@support.example.com>"
staff = ["anna.agent@example.com"]
language = "en"

[[staff]]
email = "anna.agent@example.com"
name = "Anna Agent"
language = "en"

[[template]]
id = "move"
group = "service-request"
name = { de = "Umzug", en = "Move" }
addresses = ["move@support.example.com"]
queue = "servicedesk"
guide = [
  { key = "reason", label = { de = "Grund", en = "Reason" }, required = true },
  { key = "date", label = { de = "Datum", en = "Date" }, required = true },
]
"""


def test_ingest_in_english_numbered_answers_complete_the_guide(
        database_url: str, tmp_path: Path, run_cli: Any) -> None:
    from email.message import EmailMessage

    from tests.integration.tickets.test_staff_by_mail import Cli

    config = write_config(tmp_path / "ticketgw.toml", database_url, extra=GUIDE_TOML)
    cli = Cli(run_cli, config)
    cli("db", "upgrade")
    cli("customer", "add", "jdoe", "jane@globex.example", "--name", "Jane Doe", "--org",
        "globex", "--lang", "en")

    def ingest(to: str, message_id: str, body: str, subject: str = "Moving desks") -> Any:
        message = EmailMessage()
        message["From"] = "Jane Doe <jane@globex.example>"
        message["To"], message["Subject"], message["Message-ID"] = to, subject, message_id
        message.set_content(body)
        cli("ingest", "--recipient", to, "--sender", "jane@globex.example",
            input=message.as_bytes())
        return cli.outcome(message_id, timeout=0)

    number = str(ingest("move@support.example.com", "<m1@globex>", "Please move me.\n")["ticket"])
    [ack] = [m for e, _, m in cli.outbox() if e == "ack"]
    assert "Reason:" in text_of(ack) and "Date:" in text_of(ack)
    address = str(ack["Reply-To"].addresses[0].addr_spec)
    entry = ingest(address, "<m2@globex>", "1. New team\n2. 1 March\n",
                   subject=f"Re: Moving desks [Ticket#{number}]")
    assert "guide answers recorded: reason, date" in entry["reason"]
    shown = cli.ticket(number)
    assert shown["guide_answers"] == {"reason": "New team", "date": "1 March"}
    assert shown["guide_missing"] == []
    assert "guide:\n  reason: New team\n  date: 1 March" in cli("ticket", "show", number).stdout
    [confirmation] = [m for e, _, m in cli.outbox() if e == "guide-complete"]
    assert str(confirmation["Subject"]).startswith("Your details are complete")
    assert "Reason: New team" in text_of(confirmation)
    notice = [m for e, _, m in cli.outbox() if e == "staff-notify"][-1]
    assert "Conversation guide answers:" in text_of(notice)
    assert "Date: 1 March" in text_of(notice)
    assert json.loads(cli("ticket", "show", number, "--json").stdout)["guide_missing"] == []
