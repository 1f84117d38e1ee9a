"""The staff overview by mail (issue #16 item 4): the digest as of a moment the test gives
(`ticketgw digest send --as-of`), answering from it, and the `list` mail, which only a staff
member our MTA vouches for gets answered; driven through `ticketgw ingest` with our border
MTA's Authentication-Results, on both databases. docs/admin.md 1.13."""

from __future__ import annotations

import re
import threading
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from gateway import jobs
from gateway.app import App
from gateway.config.loading import load_settings
from gateway.jobs import build_scheduler
from gateway.outbound import bouncing
from gateway.outbound.digest import send_digests
from gateway.outbound.maildir import MaildirTransport
from gateway.outbound.outbox import drain
from gateway.store.models import OutboundMail, table_of
from gateway.tickets.ticket import NewArticle, NewTicket, create_ticket
from tests.integration.smtp_helpers import DESK_WITH_STAFF
from tests.integration.tickets.test_staff_by_mail import (
    ANNA,
    MAX,
    MX,
    STAFF_PASS,
    Cli,
    dmarc,
    ingest,
    message,
    text_of,
    vouched_desk,
)

_outbound = table_of(OutboundMail)
INCIDENT = "incident@support.example.com"
QUEUE_ADDRESS = "support@support.example.com"
BEN = "ben.backoffice@example.com"
# a second queue that Anna is not on, with its own staff member (English)
BACKOFFICE = f"""
[[queue]]
id = "backoffice"
from = "Backoffice <backoffice@support.example.com>"
staff = ["{BEN}"]

[[staff]]
email = "{BEN}"
name = "Ben Backoffice"
language = "en"

[[template]]
id = "order"
group = "service-request"
name = {{ de = "Bestellung", en = "Order" }}
addresses = ["order@support.example.com"]
queue = "backoffice"
"""


@pytest.fixture
def desk(database_url: str, tmp_path: Path, run_cli: Any) -> Cli:
    return vouched_desk(run_cli, database_url, tmp_path, extra=DESK_WITH_STAFF + BACKOFFICE)


def open_ticket(cli: Cli, title: str, to: str = INCIDENT) -> str:
    mail = message(f"Max Mustermann <{MAX}>", to, title, f"<{title.replace(' ', '-')}@acme>",
                   "Bitte helfen.\n", Authentication_Results=dmarc("pass"))
    entry = ingest(cli, mail, to, MAX)
    assert entry["outcome"] == "created", entry
    return str(entry["ticket"])


def digests(cli: Cli) -> list[tuple[list[str], EmailMessage]]:
    return [(r, m) for e, r, m in cli.outbox() if e == "staff-digest"]


def test_digest_lists_open_tickets_oldest_first_and_its_addresses_answer(desk: Cli) -> None:
    cli = desk
    first = open_ticket(cli, "Drucker defekt")
    second = open_ticket(cli, "VPN bricht ab")
    closed = open_ticket(cli, "Schon erledigt")
    cli("ticket", "set", closed, "--state", "closed")
    order = open_ticket(cli, "Toner bestellen", to="order@support.example.com")
    created = datetime.fromisoformat(cli.ticket(first)["created"])

    before = cli.json("digest", "send", "--as-of", (created - timedelta(hours=1)).isoformat(),
                      "--dry-run")
    assert {r["staff"]: r["outcome"] for r in before} == {ANNA: "nothing-open",
                                                          BEN: "nothing-open"}
    as_of = (created + timedelta(days=3, minutes=5)).astimezone(UTC)
    sent = cli.json("digest", "send", "--as-of", as_of.isoformat())
    assert {r["staff"]: (r["outcome"], r["tickets"], r["language"]) for r in sent} == {
        ANNA: ("queued", [first, second], "de"), BEN: ("queued", [order], "en")}

    [(to_anna, anna), (to_ben, ben)] = sorted(digests(cli), key=lambda d: d[0])
    assert (to_anna, to_ben) == ([ANNA], [BEN])
    assert str(anna["Subject"]).startswith("Offene Tickets: 2")
    assert str(anna["From"]).endswith("<support@localhost>")
    assert anna["Auto-Submitted"] == "auto-generated"
    text = text_of(anna)
    assert text.index(first) < text.index(second) and closed not in text and order not in text
    assert "Kunde:        Max Mustermann" in text and "Alter:        3 Tage" in text
    assert "Bearbeiter:   niemand" in text and "Status:       neu" in text
    addresses = re.findall(r"Antworten an: (\S+)", text)
    assert len(addresses) == 2 and all(a.startswith("support+s-") for a in addresses)
    assert f"Stand {as_of:%d.%m.%Y, %H:%M} Uhr (UTC)" in text
    ben_text = text_of(ben)
    assert "Age:          3 days" in ben_text and "Reply to:     backoffice+s-" in ben_text
    html = ben.get_body(("html",))
    assert html is not None and "mailto:backoffice+s-" in html.get_content()

    answer = message(f"Anna Agent <{ANNA}>", addresses[0], "Re: Offene Tickets",
                     "<digest-answer@example.com>", "#state pending\nWir kümmern uns.\n",
                     Authentication_Results=STAFF_PASS)
    entry = ingest(cli, answer, addresses[0], ANNA)
    assert (entry["outcome"], entry["rule"], entry["ticket"]) == \
        ("appended", "staff-token", first), entry
    assert "answer sent to the customer" in entry["reason"]
    assert cli.ticket(first)["state"] == "pending"
    [(to_max, staff_answer)] = [(r, m) for e, r, m in cli.outbox() if e == "staff-answer"]
    assert to_max == [MAX] and "Wir kümmern uns." in text_of(staff_answer)

    only = cli.json("digest", "send", "--as-of", as_of.isoformat(), "--staff", BEN,
                    "--dry-run")
    assert [(r["staff"], r["outcome"]) for r in only] == [(BEN, "dry-run")]
    assert len(digests(cli)) == 2                       # a dry run queues nothing


def test_list_mail_from_vouched_staff_is_answered_and_from_others_is_a_ticket(desk: Cli) -> None:
    cli = desk
    number = open_ticket(cli, "Drucker defekt")
    open_ticket(cli, "Toner bestellen", to="order@support.example.com")

    asked = message(f"Anna Agent <{ANNA}>", QUEUE_ADDRESS, "list", "<list1@example.com>",
                    "\n", Authentication_Results=STAFF_PASS)
    entry = ingest(cli, asked, QUEUE_ADDRESS, ANNA)
    assert (entry["outcome"], entry["rule"]) == ("ignored", "staff-list"), entry
    assert "overview of servicedesk" in entry["reason"] and "queued, 1 tickets" in entry["reason"]
    [(to, listed)] = digests(cli)
    assert to == [ANNA] and listed["In-Reply-To"] == "<list1@example.com>"
    assert listed["Auto-Submitted"] == "auto-replied"     # an answer to her mail, RFC 3834
    assert "wie angefordert" in text_of(listed) and number in text_of(listed)
    assert "Toner bestellen" not in text_of(listed)      # not Anna's queue

    forged = message(f"Anna Agent <{ANNA}>", QUEUE_ADDRESS, "#list", "<list2@evil.example>",
                     "\n", Authentication_Results=f"{MX}; dmarc=fail header.from=example.com")
    entry = ingest(cli, forged, QUEUE_ADDRESS, "x@evil.example")
    assert entry["outcome"] == "created" and entry["rule"] != "staff-list", entry
    stranger = message("Mallory <mallory@elsewhere.example>", QUEUE_ADDRESS, "list",
                       "<list3@elsewhere.example>", "\n")
    entry = ingest(cli, stranger, QUEUE_ADDRESS, "mallory@elsewhere.example")
    assert entry["outcome"] == "created", entry
    assert cli.ticket(str(entry["ticket"]))["title"] == "list"
    assert len(digests(cli)) == 1                       # only Anna's genuine request
    assert all("Drucker defekt" not in m.as_string()
               for e, r, m in cli.outbox() if r != [ANNA] and e != "ack")


def printer_ticket(app: App) -> None:
    """One open ticket in the servicedesk queue, so that a digest has something to say."""
    with app.db.write() as session:
        create_ticket(session, NewTicket(
            title="Drucker defekt", queue_id=app.stages.configured_ids.queue(session,
                                                                             "servicedesk"),
            contact_email="max@acme.example", first_article=NewArticle(
                direction="in", channel="mail", sender="customer", body="Kaputt.")),
            numbering=app.stages.numbering, actor="test")


def test_the_digest_is_scheduled_only_when_configured(app: App, tmp_path: Path) -> None:
    assert "staff-digest" not in {j.id for j in build_scheduler(
        app.db, app.blobs, app.settings.web, answering=app.answering).get_jobs()}
    path = tmp_path / "digest.toml"
    path.write_text('[tickets]\ntimezone = "Europe/Berlin"\n\n[digest]\n'
                    'schedule = "0 8 * * mon-fri"\n', encoding="utf-8")
    settings = load_settings(path)
    scheduled = build_scheduler(app.db, app.blobs, app.settings.web, answering=type(
        app.answering)(settings, app.answering.renderer))
    [job] = [j for j in scheduled.get_jobs() if j.id == "staff-digest"]
    assert str(job.trigger) == "cron[month='*', day='*', day_of_week='mon-fri', hour='8', " \
                               "minute='0']"
    assert str(job.trigger.timezone) == "Europe/Berlin"
    bad = tmp_path / "bad.toml"
    bad.write_text('[digest]\nschedule = "every morning"\n', encoding="utf-8")
    with pytest.raises(Exception, match="not a crontab line"):
        load_settings(bad)


def test_the_digest_is_held_back_from_a_dead_staff_address(app: App, tmp_path: Path) -> None:
    """Like an acknowledgment: once our digest to an address bounced hard, the next one is
    suppressed, until the address writes again."""
    printer_ticket(app)
    now = datetime.now(UTC) + timedelta(hours=1)
    with app.db.write() as session:
        [first] = send_digests(session, app.answering, now)
    assert (first.staff, first.outcome) == (ANNA, "queued") and first.message_id
    transport = MaildirTransport(tmp_path / "sent")
    while drain(app.db, renderer=app.renderer, transport=transport):
        pass
    with app.db.write() as session:
        bouncing.record_bounces(session, [(ANNA, "5.1.1", True)], [first.message_id],
                                "test", None)
        [second] = send_digests(session, app.answering, now)
    while drain(app.db, renderer=app.renderer, transport=transport):
        pass
    with app.db.read() as session:
        statuses = dict(session.execute(select(_outbound.c.message_id, _outbound.c.status)
                                        .where(_outbound.c.event == "staff-digest")).all())
    assert statuses == {first.message_id: "sent", second.message_id: "suppressed"}


def test_the_schedule_firing_on_two_instances_sends_one_digest(app: App) -> None:
    """Every instance runs the schedule: the job of the second (here: run again, and on
    PostgreSQL also at the same moment from another thread) finds the first one's digest
    and sends none; the next slot sends again."""
    printer_ticket(app)
    scheduled = jobs._send_digests
    instances = [threading.Thread(target=scheduled, args=(app.db, app.answering))
                 for _ in range(2)]
    for instance in instances:
        instance.start()
    for instance in instances:
        instance.join(30)
    scheduled(app.db, app.answering)

    def digests_to_anna() -> int:
        with app.db.read() as session:
            return sum(ANNA in r for r in session.execute(select(_outbound.c.recipients).where(
                _outbound.c.event == "staff-digest")).scalars())

    assert digests_to_anna() == 1
    with app.db.write() as session:     # the next slot: the last digest is older than that
        session.execute(update(_outbound).values(
            created=datetime.now(UTC) - jobs.DIGEST_ONCE - timedelta(minutes=1)))
    scheduled(app.db, app.answering)
    assert digests_to_anna() == 2


def test_the_schedule_sends_no_digest_on_a_public_holiday(app: App) -> None:
    printer_ticket(app)
    christmas = datetime(2026, 12, 25, 7, 0, tzinfo=UTC)      # 08:00 in Berlin
    tickets = app.answering.settings.tickets.model_copy(update={
        "timezone": "Europe/Berlin", "holidays": [date(2026, 12, 25)]})
    answering = replace(app.answering, settings=app.answering.settings.model_copy(
        update={"tickets": tickets}))

    def digests() -> int:
        with app.db.read() as session:
            return len(session.execute(select(_outbound.c.id).where(
                _outbound.c.event == "staff-digest")).all())

    jobs._send_digests(app.db, answering, christmas)
    assert digests() == 0
    # 23:30 UTC on the 25th is already the 26th in Berlin: a working day
    jobs._send_digests(app.db, answering, christmas + timedelta(hours=16, minutes=30))
    assert digests() == 1
