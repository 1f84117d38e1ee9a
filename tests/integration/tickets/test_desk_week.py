"""A week at a desk, run entirely from mail (issue #16, "Done means"): twenty tickets from
two organisations, guide answers by reply, a Cc'd manager and a colleague who joins, staff
who work only from their notifications, the morning digest and the `list` mail, a missed
service level that reminds and then escalates, and a pending ticket that reminds its
customer and is closed. Driven the way an installation runs: `ticketgw ingest` as the MTA
pipe (with our border MTA's Authentication-Results), `ticketgw digest send --as-of` and
`ticketgw sla check --as-of` as the scheduler would run them, on SQLite and PostgreSQL.

The clock. The story plays in the week of Monday 2025-03-10 (Wednesday the 12th is a
holiday). Digest and deadline checks take the story's moment (`--as-of`); `ingest` stamps
the real clock, which is after that week, so when a mail "arrives" at a moment of the story
the test writes that moment into the row the clock stamped (the ticket's creation, then
`ticketgw sla recompute` as an admin would; the change to `pending`), as
test_service_levels does. The week lies in the past so that what the real clock decides
(the `list` answer shows the tickets created by now) sees the whole story; what it stamps
or judges besides (a staff answer's time, the notices' due times, the `list` answer's
order) is not asserted. Nothing sleeps and
nothing asserts a duration.

Every mail the gateway queues is read back from the outbox (`outbox show --raw`) after each
step and compared with what the step should have sent, by event and recipient; at the end
the whole outbox is checked once more, with the language and the automatic-mail headers of
every mail."""

from __future__ import annotations

import email
import email.policy
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import and_, create_engine, select, update

from gateway.store.models import Ticket, TicketHistory, table_of
from tests.integration.tickets.test_staff_by_mail import (
    STAFF_PASS,
    Cli,
    dmarc,
    ingest,
    message,
    text_of,
    vouched_desk,
)

BERLIN = ZoneInfo("Europe/Berlin")
_ticket, _history = table_of(Ticket), table_of(TicketHistory)

# acme: a German customer with a manager (not registered) and a registered colleague
MAX = "max.mustermann@acme.example"
ERIKA = "erika.kollegin@acme.example"
BERTA = "berta.boss@acme.example"
# globex: two English customers
JOHN = "john.smith@globex.example"
JANE = "jane.doe@globex.example"
ANNA = "anna.agent@example.com"          # staff, German
BEN = "ben.brown@example.com"            # staff, English
LEAD = "lead@example.com"                # the escalation address (queue language: German)
INCIDENT = "incident@support.example.com"
QUEUE_ADDRESS = "support@support.example.com"
NAMES = {MAX: "Max Mustermann", ERIKA: "Erika Kollegin", BERTA: "Berta Boss",
         JOHN: "John Smith", JANE: "Jane Doe", ANNA: "Anna Agent", BEN: "Ben Brown"}
GERMAN = {MAX, ERIKA, BERTA, ANNA, LEAD}

CONFIG = f"""
[tickets]
timezone = "Europe/Berlin"

[outbound]
# the whole week runs within a minute of real time, and the limit counts real hours: with
# the default of 5 an address would be throttled after a few of its week's mails
max_auto_replies_per_hour = 200

[digest]
schedule = "0 8 * * mon-fri"

[[queue]]
id = "servicedesk"
from = "Service Desk <{QUEUE_ADDRESS}>"
staff = ["{ANNA}", "{BEN}"]
participants = "organisation"
hours = "mon-fri 08:00-17:00"
holidays = ["2025-03-12"]
escalation = "{LEAD}"
pending_reminder_days = 2
pending_close_days = 3

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
addresses = ["{INCIDENT}"]
queue = "servicedesk"
sla = {{ first_response = "4h", solution = "40h", warn_before = "1h" }}
sla_by_priority = {{ 4 = {{ first_response = "2h" }} }}

[[template.guide]]
key = "system"
label = {{ de = "Betroffenes System", en = "Affected system" }}
required = true

[[template.guide]]
key = "reason"
label = {{ de = "Grund", en = "Reason" }}
required = true
"""


def berlin(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN)


def at(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


# -- the helper layer --------------------------------------------------------------------------

@dataclass
class Sent:
    event: str
    recipient: str
    mail: EmailMessage


@dataclass
class Desk:
    """The desk as its users see it: mail in, the outbox out, the CLI for checks."""

    cli: Cli
    database_url: str
    seen: set[int] = field(default_factory=set)
    all_sent: list[Sent] = field(default_factory=list)
    expected: Counter[tuple[str, str]] = field(default_factory=Counter)
    customer_address: dict[str, str] = field(default_factory=dict)   # number -> +r- address
    staff_address: dict[str, str] = field(default_factory=dict)      # number -> +s- address
    counter: int = 0

    def mail(self, sender: str, to: str, subject: str, body: str, *, cc: str = "",
             auth: str = "") -> dict[str, Any]:
        """`sender` writes to `to`; the processing-log entry of the mail."""
        self.counter += 1
        domain = sender.split("@")[1]
        mail = message(f"{NAMES.get(sender, '')} <{sender}>", to, subject,
                       f"<week{self.counter}@{domain}>", body,
                       Authentication_Results=auth or dmarc("pass", domain))
        if cc:
            mail["Cc"] = cc
        return ingest(self.cli, mail, to, sender)

    def staff_reply(self, staff: str, number: str, body: str,
                    address: str | None = None) -> dict[str, Any]:
        """A staff member answers ticket `number` at its staff reply address (from the
        notification, or `address` from the digest)."""
        entry = self.mail(staff, address or self.staff_address[number],
                          f"Re: [Ticket#{number}]", body, auth=STAFF_PASS)
        assert (entry["outcome"], entry["ticket"]) == ("appended", number), entry
        return entry

    def customer_reply(self, sender: str, number: str, body: str) -> dict[str, Any]:
        entry = self.mail(sender, self.customer_address[number], f"Re: [Ticket#{number}]", body)
        assert (entry["outcome"], entry["ticket"]) == ("appended", number), entry
        return entry

    def new_mails(self) -> list[Sent]:
        """The mails queued since the last call, oldest first (one per recipient)."""
        rows = [r for r in reversed(self.cli.json("outbox", "list", "--limit", "1000"))
                if r["id"] not in self.seen]
        found = []
        for row in rows:
            self.seen.add(row["id"])
            raw = self.cli("outbox", "show", str(row["id"]), "--raw").stdout_bytes
            parsed: Any = email.message_from_bytes(raw, policy=email.policy.default)
            assert len(row["recipients"]) == 1, row
            found.append(Sent(row["event"], row["recipients"][0], parsed))
        self.all_sent.extend(found)
        return found

    def step(self, *expected: tuple[str, str]) -> list[Sent]:
        """The mails of this step, which must be exactly `expected` (event, recipient)."""
        found = self.new_mails()
        assert Counter((s.event, s.recipient) for s in found) == Counter(expected), \
            [(s.event, s.recipient) for s in found]
        self.expected.update(expected)
        return found

    def ticket(self, number: str) -> dict[str, Any]:
        return self.cli.ticket(number)

    def arrived(self, number: str, moment: datetime) -> None:
        """Ticket `number` arrived at `moment` of the story (see the module docstring)."""
        self._update(_ticket.c.number == number, _ticket, created=moment)

    def went_pending(self, number: str, moment: datetime) -> None:
        """Ticket `number` went `pending` at `moment` of the story (its history entry, from
        which the waiting days count)."""
        ticket_id = select(_ticket.c.id).where(_ticket.c.number == number).scalar_subquery()
        self._update(and_(_history.c.ticket_id == ticket_id, _history.c.field == "state",
                          _history.c.new_value == "pending"), _history, at=moment)

    def _update(self, where: Any, table: Any, **values: Any) -> None:
        engine = create_engine(self.database_url)
        with engine.begin() as connection:
            connection.execute(update(table).where(where).values(**values))
        engine.dispose()

    def digest(self, moment: str) -> dict[str, dict[str, Any]]:
        """The morning digest as the scheduler sends it; per staff member what was sent."""
        return {r["staff"]: r for r in self.cli.json("digest", "send", "--as-of", moment)}

    def sla_check(self, moment: str) -> list[tuple[str, str, str | None, list[str]]]:
        return [(a["ticket"], a["action"], a["target"], a["recipients"])
                for a in self.cli.json("sla", "check", "--as-of", moment)]


def reply_address(mail: EmailMessage) -> str:
    return str(mail["Reply-To"].addresses[0].addr_spec)


def digest_entries(mail: EmailMessage) -> list[tuple[str, str]]:
    """(ticket number, staff reply address) of each entry of a digest, in order."""
    text = text_of(mail)
    numbers = re.findall(r"^(\d{10,})  ", text, re.M)
    addresses = re.findall(r"(?:Antworten an|Reply to): +(\S+)", text)
    return list(zip(numbers, addresses, strict=True))


@pytest.fixture
def desk(database_url: str, tmp_path: Path, run_cli: Any) -> Desk:
    cli = vouched_desk(run_cli, database_url, tmp_path, extra=CONFIG,
                       inbound='domains = ["support.example.com"]')
    cli("customer", "add", "ekollegin", ERIKA, "--name", NAMES[ERIKA], "--org", "acme")
    cli("customer", "add", "jsmith", JOHN, "--name", NAMES[JOHN], "--org", "globex",
        "--lang", "en")
    cli("customer", "add", "jdoe", JANE, "--name", NAMES[JANE], "--org", "globex",
        "--lang", "en")
    return Desk(cli, database_url)


ARRIVALS = [   # sender, subject, "Priorität: hoch"
    (MAX, "Drucker druckt nicht", False),
    (MAX, "Scanner defekt", False),
    (ERIKA, "Kein Netz im Büro 3", True),
    (JOHN, "VPN drops", False),
    (JANE, "Outlook crashes", False),
    (ERIKA, "Passwort abgelaufen", False),
    (JOHN, "Monitor flickers", False),
    (JANE, "Server unreachable", True),       # the one that misses its first response
    (MAX, "Telefon ohne Ton", False),
    (JOHN, "Keyboard missing keys", False),
    (ERIKA, "Beamer im Saal", False),
    (JANE, "Calendar out of sync", False),
    (MAX, "Laufwerk K: fehlt", False),
    (JOHN, "Printer jam", False),
    (ERIKA, "Zugang zum Wiki", False),
    (JANE, "Slow laptop", False),
    (MAX, "Headset rauscht", False),
    (JOHN, "Teams login fails", False),
    (ERIKA, "Maus defekt", False),
    (JANE, "New badge", False),
]
WITH_CC = 0            # Max's first mail has his manager in Cc
MISSING_GUIDE = 1      # Max's second mail answers none of the guide's questions
BREACH = 7             # Jane's urgent ticket nobody answers in time


# -- the week ----------------------------------------------------------------------------------

@pytest.mark.slow          # about 30 s: some 130 mails in, 200 CLI runs
@pytest.mark.backends("postgresql")   # once, on the production database: each piece it
# plays (guide, participants, SLA, digest, waiting) has its own tests on both databases
def test_a_week_at_the_desk(desk: Desk) -> None:
    # Monday 08:00: the digest finds nothing open
    assert {s: r["outcome"] for s, r in desk.digest("2025-03-10T08:00").items()} == \
        {ANNA: "nothing-open", BEN: "nothing-open"}
    desk.step()

    # Monday 08:00-09:35: twenty tickets, one every five minutes
    numbers: list[str] = []
    for i, (sender, title, high) in enumerate(ARRIVALS):
        body = "Es geht nicht.\n" if sender in GERMAN else "It does not work.\n"
        if high:
            body = "Priorität: hoch\n" + body
        if i != MISSING_GUIDE:
            body += "Betroffenes System: Laptop\nGrund: Fehler\n" if sender in GERMAN \
                else "Affected system: laptop\nReason: error\n"
        entry = desk.mail(sender, INCIDENT, title, body,
                          cc=f"{NAMES[BERTA]} <{BERTA}>" if i == WITH_CC else "")
        assert entry["outcome"] == "created", entry
        number = str(entry["ticket"])
        numbers.append(number)
        desk.arrived(number, berlin("2025-03-10T08:00") + timedelta(minutes=5 * i))
        mails = desk.step(("ack", sender), ("staff-notify", ANNA), ("staff-notify", BEN))
        assert all(f"[Ticket#{number}]" in str(s.mail["Subject"]) for s in mails)
        [ack] = [s.mail for s in mails if s.event == "ack"]
        desk.customer_address[number] = reply_address(ack)
        [notice, other] = sorted((s for s in mails if s.event == "staff-notify"),
                                 key=lambda s: s.recipient != ANNA)
        desk.staff_address[number] = reply_address(notice.mail)
        assert reply_address(other.mail) == desk.staff_address[number]   # one per ticket
        assert desk.staff_address[number].startswith("support+s-")
        # only the acknowledgment of the mail without answers asks for them
        assert ("fehlen uns noch diese Angaben" in text_of(ack)) == (i == MISSING_GUIDE)
    desk.cli("sla", "recompute")                 # as the admin would after such a change
    cc_ticket, guide_ticket, breach = numbers[WITH_CC], numbers[MISSING_GUIDE], numbers[BREACH]
    first = desk.ticket(cc_ticket)
    assert [p["address"] for p in first["participants"]] == [BERTA]
    assert at(first["first_response_due"]) == berlin("2025-03-10T12:00")
    assert at(first["solution_due"]) == berlin("2025-03-17T12:00")   # 40h: Wednesday off
    urgent = desk.ticket(breach)
    assert urgent["priority"] == 4
    assert at(urgent["first_response_due"]) == berlin("2025-03-10T10:35")
    assert desk.ticket(guide_ticket)["guide_missing"] == ["system", "reason"]
    assert desk.ticket(numbers[2])["guide_missing"] == []

    # Max answers the guide of his second ticket: a numbered line, then a labelled one
    entry = desk.customer_reply(MAX, guide_ticket, "1. Scanner im 2. OG\n")
    assert "guide answers recorded: system" in entry["reason"]
    desk.step(("staff-notify", ANNA), ("staff-notify", BEN))
    entry = desk.customer_reply(MAX, guide_ticket, "Grund: Papierstau\n")
    assert "guide complete" in entry["reason"]
    [complete] = [s for s in desk.step(("staff-notify", ANNA), ("staff-notify", BEN),
                                       ("guide-complete", MAX)) if s.event == "guide-complete"]
    assert "Grund: Papierstau" in text_of(complete.mail)
    assert desk.ticket(guide_ticket)["guide_answers"] == {"system": "Scanner im 2. OG",
                                                          "reason": "Papierstau"}

    # Monday morning the staff answer from their notifications: Anna takes acme's
    # tickets, Ben globex's; Ben takes the urgent one but only notes that he will look
    for i, number in enumerate(numbers):
        customer = ARRIVALS[i][0]
        if i == BREACH:
            desk.staff_reply(BEN, number, "#take\n#internal\nSchaue ich mir nachher an.\n")
            desk.step()
        elif customer in (MAX, ERIKA):
            desk.staff_reply(ANNA, number, "#take\nGuten Tag, wir kümmern uns darum.\n")
            desk.step(("staff-answer", customer), *([("staff-answer", BERTA)]
                                                    if i == WITH_CC else []))
        else:
            desk.staff_reply(BEN, number, "#take\nHello, we are on it.\n")
            desk.step(("staff-answer", customer))
    assert sorted(t["number"] for t in desk.cli.json("ticket", "list", "--assignee", BEN)) \
        == [n for i, n in enumerate(numbers) if ARRIVALS[i][0] in (JOHN, JANE)]
    assert desk.cli.json("ticket", "list", "--unassigned") == []
    assert desk.ticket(breach)["assignee"] == BEN
    assert desk.ticket(breach)["first_response_at"] is None          # a note is no answer

    # the deadline checks of Monday: an hour before 10:35 the assignee first, then the
    # queue's staff are reminded; after 10:35 the escalation address gets the escalation
    assert desk.sla_check("2025-03-10T09:30") == []
    assert desk.sla_check("2025-03-10T09:40") == [
        (breach, "sla-reminder", "first-response", [BEN, ANNA])]
    reminders = desk.step(("sla-reminder", BEN), ("sla-reminder", ANNA))
    assert [s.recipient for s in reminders] == [BEN, ANNA]          # the assignee first
    assert desk.sla_check("2025-03-10T10:00") == []
    assert desk.sla_check("2025-03-10T10:40") == [
        (breach, "sla-escalation", "first-response", [LEAD])]
    [escalation] = desk.step(("sla-escalation", LEAD))
    assert f"[Ticket#{breach}]" in str(escalation.mail["Subject"])
    assert f"Zuständig:  {BEN}" in text_of(escalation.mail)
    for moment in ("2025-03-10T10:41", "2025-03-10T12:30", "2025-03-10T16:59"):
        assert desk.sla_check(moment) == []                           # nothing more
    desk.step()
    history = [(h["actor"], h["field"], h["new"].split(" ")[0])
               for h in desk.ticket(breach)["history"] if h["field"].startswith("sla-")]
    assert history == [("system:sla", "sla-reminder", "first-response"),
                       ("system:sla", "sla-escalation", "first-response")]

    # Tuesday 08:00: the digest, overdue first, each with the ticket's staff reply address
    sent = desk.digest("2025-03-11T08:00")
    assert {s: (r["outcome"], r["tickets"][0], len(r["tickets"])) for s, r in sent.items()} \
        == {ANNA: ("queued", breach, 20), BEN: ("queued", breach, 20)}
    digests = {s.recipient: s.mail for s in desk.step(("staff-digest", ANNA),
                                                      ("staff-digest", BEN))}
    in_order = [breach] + [n for n in numbers if n != breach]        # then the oldest first
    for staff in (ANNA, BEN):
        assert digest_entries(digests[staff]) == [(n, desk.staff_address[n]) for n in in_order]
    assert "Stand 11.03.2025, 08:00 Uhr" in text_of(digests[ANNA])
    assert "(ÜBERFÄLLIG)" in text_of(digests[ANNA]).split(numbers[0])[0]
    assert "OVERDUE" in text_of(digests[BEN]).split(numbers[0])[0]

    # Ben answers the overdue ticket from the digest and closes it
    address = digest_entries(digests[BEN])[0][1]
    desk.staff_reply(BEN, breach, "#state closed\nSorry for the wait: the server is back.\n",
                     address=address)
    desk.step(("status", JANE), ("staff-answer", JANE))   # the command runs first
    closed = desk.ticket(breach)
    assert closed["state"] == "closed" and closed["first_response_at"] is not None

    # Erika, Max's colleague, writes to his ticket: she becomes a participant, and the
    # next staff answer reaches Max, his manager from the Cc and Erika
    entry = desk.customer_reply(ERIKA, cc_ticket, "Bei mir druckt er auch nicht.\n")
    assert f"{ERIKA} is now a participant" in entry["reason"], entry
    desk.step(("staff-notify", ANNA), ("staff-notify", BEN))
    assert [p["address"] for p in desk.ticket(cc_ticket)["participants"]] == [BERTA, ERIKA]
    desk.staff_reply(ANNA, cc_ticket, "Der Techniker kommt morgen um 10 Uhr.\n")
    answers = desk.step(("staff-answer", MAX), ("staff-answer", BERTA), ("staff-answer", ERIKA))
    for sent in answers:
        assert "Der Techniker kommt morgen um 10 Uhr." in text_of(sent.mail)
        assert reply_address(sent.mail) == desk.customer_address[cc_ticket]
        assert desk.staff_address[cc_ticket] not in sent.mail.as_string()

    # Anna asks Max for a serial number at 10:00 and waits, with his manager in the loop;
    # she closes two of Erika's tickets
    waiting = numbers[8]
    desk.staff_reply(ANNA, waiting, f"#cc add {BERTA}\n#state pending\nBitte schicken Sie "
                                    "uns die Seriennummer des Telefons.\n")
    desk.went_pending(waiting, berlin("2025-03-11T10:00"))
    desk.step(("status", MAX), ("status", BERTA), ("staff-answer", MAX),
              ("staff-answer", BERTA))
    for number in (numbers[2], numbers[5]):
        desk.staff_reply(ANNA, number, "#state closed\n")            # a command alone
        desk.step(("status", ERIKA))
    assert desk.sla_check("2025-03-11T16:00") == []
    desk.step()

    # Wednesday is a holiday: the scheduler still sends the digest, the clock stands still
    still_open = [n for n in numbers if n not in (breach, numbers[2], numbers[5], waiting)]
    sent = desk.digest("2025-03-12T08:00")                # pending is off the clock: last
    assert {s: r["tickets"] for s, r in sent.items()} == {ANNA: [*still_open, waiting],
                                                          BEN: [*still_open, waiting]}
    digests = {s.recipient: s.mail for s in desk.step(("staff-digest", ANNA),
                                                      ("staff-digest", BEN))}
    assert "Status:       wartend" in text_of(digests[ANNA]).split(waiting)[1]
    assert desk.sla_check("2025-03-12T16:00") == []                 # Tuesday 17:00 + 2 days
    desk.step()

    # Thursday: the digest; Ben closes two of globex's tickets from it with an answer; the
    # pending ticket reminds Max two days after it began to wait
    sent = desk.digest("2025-03-13T08:00")
    assert sent[BEN]["tickets"] == [*still_open, waiting]
    digests = {s.recipient: s.mail for s in desk.step(("staff-digest", ANNA),
                                                      ("staff-digest", BEN))}
    addresses = dict(digest_entries(digests[BEN]))
    for number, customer in ((numbers[3], JOHN), (numbers[4], JANE)):
        desk.staff_reply(BEN, number, "#state closed\nFixed, closing this.\n",
                         address=addresses[number])
        desk.step(("status", customer), ("staff-answer", customer))
        still_open.remove(number)
    assert desk.sla_check("2025-03-13T09:59") == []
    assert desk.sla_check("2025-03-13T10:01") == [(waiting, "pending-reminder", None, [MAX])]
    [reminder] = desk.step(("pending-reminder", MAX))
    assert f"[Ticket#{waiting}]" in str(reminder.mail["Subject"])
    assert reply_address(reminder.mail) == desk.customer_address[waiting]
    assert desk.sla_check("2025-03-13T16:00") == []
    desk.step()

    # Friday: the digest; Max never answered, so at 10:00 the ticket is closed; Anna asks
    # for the overview with a `list` mail
    desk.digest("2025-03-14T08:00")
    desk.step(("staff-digest", ANNA), ("staff-digest", BEN))
    assert desk.sla_check("2025-03-14T10:01") == [(waiting, "pending-closed", None, [MAX])]
    closing, told = desk.step(("pending-closed", MAX), ("status", BERTA))
    assert "3 Tage auf Ihre Antwort" in text_of(closing.mail)
    assert "geschlossen" in str(told.mail["Subject"])
    assert desk.ticket(waiting)["state"] == "closed"
    assert desk.sla_check("2025-03-14T16:59") == []
    desk.step()

    # Max answers the closing mail after all: the ticket opens again
    desk.customer_reply(MAX, waiting, "Die Seriennummer ist 4711-0815.\n")
    assert desk.ticket(waiting)["state"] == "open"
    reopened = desk.step(("status", MAX), ("status", BERTA), ("staff-notify", ANNA),
                         ("staff-notify", BEN))
    assert all("offen" in str(s.mail["Subject"]) for s in reopened if s.event == "status")

    entry = desk.mail(ANNA, QUEUE_ADDRESS, "list", "\n", auth=STAFF_PASS)
    assert (entry["outcome"], entry["rule"]) == ("ignored", "staff-list"), entry
    [overview] = desk.step(("staff-digest", ANNA))
    assert overview.mail["In-Reply-To"] == entry["message_id"]
    # (its order is the real clock's, which finds them all overdue: not asserted)
    assert sorted(n for n, _ in digest_entries(overview.mail)) == sorted([*still_open, waiting])
    assert "wie angefordert" in text_of(overview.mail)

    # the technician was there: Anna closes Max's first ticket; the status mail reaches him
    # and both participants
    desk.staff_reply(ANNA, cc_ticket, "#state closed\n")
    desk.step(("status", MAX), ("status", BERTA), ("status", ERIKA))


    # the whole outbox: exactly what the steps expected, each in its reader's language,
    # the automatic ones marked as such (RFC 3834 §5), the staff's answers not
    desk.step()
    assert len(desk.cli.json("outbox", "list", "--limit", "1000")) == len(desk.all_sent)
    assert Counter((s.event, s.recipient) for s in desk.all_sent) == desk.expected
    assert Counter(s.event for s in desk.all_sent) == {
        "ack": 20, "staff-notify": 48, "guide-complete": 1, "staff-answer": 28, "status": 13,
        "sla-reminder": 2, "sla-escalation": 1, "staff-digest": 9, "pending-reminder": 1,
        "pending-closed": 1}
    for sent in desk.all_sent:
        assert language_of(sent) == ("de" if sent.recipient in GERMAN else "en"), \
            (sent.event, sent.recipient, str(sent.mail["Subject"]))
        expected = "auto-replied" if sent is overview else AUTO_SUBMITTED[sent.event]
        assert sent.mail["Auto-Submitted"] == expected, \
            (sent.event, sent.recipient, sent.mail["Auto-Submitted"])


AUTO_SUBMITTED = {"ack": "auto-replied", "guide-complete": "auto-replied",
                  "staff-answer": None, "staff-notify": "auto-generated",
                  "status": "auto-generated", "sla-reminder": "auto-generated",
                  "sla-escalation": "auto-generated", "staff-digest": "auto-generated",
                  "pending-reminder": "auto-generated", "pending-closed": "auto-generated"}
# how each language begins a subject; a staff answer's subject is the customer's own, so
# its footer tells
GERMAN_SUBJECTS = ("Ihre Anfrage ist eingegangen:", "Neues Ticket:", "Antwort von ",
                   "Ihre Angaben sind vollständig:", "Ihr Ticket wurde", "Neuer Status ", "Fällig ",
                   "Verpasst: ", "Offene Tickets: ", "Wir warten auf Ihre Antwort:")
ENGLISH_SUBJECTS = ("We have received your request:", "New ticket:", "Reply from ",
                    "Your ticket has been", "Due ", "Missed: ", "Open tickets: ")


def language_of(sent: Sent) -> str:
    subject = str(sent.mail["Subject"])
    if sent.event == "staff-answer":
        footer = text_of(sent.mail).split("\n-- ")[-1]
        return "de" if "antworten Sie einfach" in footer else \
            "en" if "simply reply" in footer else "?"
    return "de" if subject.startswith(GERMAN_SUBJECTS) else \
        "en" if subject.startswith(ENGLISH_SUBJECTS) else "?"
