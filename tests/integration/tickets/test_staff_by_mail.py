"""Who may act as staff, and who is the customer, driven the way users do it: SMTP into a
real `ticketgw serve` (its outbox delivering into a Maildir), or `ticketgw ingest` as an
MTA pipe, with the CLI to look. Issue #14, items 5 (forged staff mail), 7 (a typo in a
command must not leak a note) and 9 (customer mail that fails DMARC); docs/admin.md 5.2."""

from __future__ import annotations

import email
import email.policy
import json
import smtplib
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_config
from tests.integration.smtp_helpers import DESK_WITH_STAFF
from tests.maildir import Maildir
from tests.serve_helpers import free_port, serve_config, serving, tickets_titled

MAX = "max.mustermann@acme.example"         # the demo's customer
ANNA = "anna.agent@example.com"             # the demo's staff member
MX = "mx.support.example.com"


# -- helpers -----------------------------------------------------------------------------------

class Cli:
    """`ticketgw --config CONFIG ...` in-process, as a user runs it (`run_cli`)."""

    def __init__(self, run_cli: Any, config: Path) -> None:
        self.run_cli, self.config = run_cli, config

    def __call__(self, *args: str, input: bytes | None = None) -> Any:
        result = self.run_cli("--config", str(self.config), *args,
                              input=input.decode() if input is not None else None)
        assert result.exit_code == 0, result.output
        return result

    def json(self, *args: str, input: bytes | None = None) -> Any:
        return json.loads(self(*args, "--json", input=input).stdout)

    def outcome(self, message_id: str, timeout: float = 30) -> dict[str, Any]:
        """The processing-log entry of a received mail, once the worker has finished it
        (its changes and the mails they cause commit with it)."""
        deadline = time.monotonic() + timeout
        while True:
            for entry in self.json("inbound", "list"):
                if entry["message_id"] == message_id and entry["outcome"] != "pending":
                    return dict(entry)
            if time.monotonic() > deadline:
                raise AssertionError(f"{message_id} was not processed within {timeout} s")
            time.sleep(0.2)

    def ticket(self, number: str) -> dict[str, Any]:
        return dict(self.json("ticket", "show", number))

    def outbox(self) -> list[tuple[str, list[str], EmailMessage]]:
        """Every mail in the outbox, oldest first: event, recipients, the parsed mail."""
        rows = self.json("outbox", "list", "--limit", "1000")
        return [(row["event"], row["recipients"], email.message_from_bytes(  # type: ignore[misc]
            self("outbox", "show", str(row["id"]), "--raw").stdout_bytes,
            policy=email.policy.default)) for row in reversed(rows)]

    def events(self) -> list[str]:
        return [row["event"] for row in self.json("outbox", "list", "--limit", "1000")]


def message(sender: str, to: str, subject: str, message_id: str, body: str,
            **headers: str) -> EmailMessage:
    mail = EmailMessage()
    for name, value in headers.items():          # on top, as our border MTA adds them
        mail[name.replace("_", "-")] = value
    mail["From"] = sender
    mail["To"] = to
    mail["Subject"] = subject
    mail["Message-ID"] = message_id
    mail.set_content(body)
    return mail


def smtp(port: int, mail: EmailMessage, sender: str, recipient: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.send_message(mail, from_addr=sender, to_addrs=[recipient])


def text_of(mail: EmailMessage) -> str:
    body = mail.get_body(("plain",))
    return body.get_content() if body is not None else ""


def to(mail: EmailMessage) -> str:
    return str(mail["To"].addresses[0].addr_spec)


def reply_to(mail: EmailMessage) -> str:
    return str(mail["Reply-To"].addresses[0].addr_spec)


def open_ticket(port: int, config: Path, outbox: Maildir, title: str) -> tuple[str, str, str]:
    """Max opens a ticket over SMTP; its number, his reply address (the Reply-To of his
    acknowledgment) and the staff address (the Reply-To of Anna's notice)."""
    smtp(port, message(f"Max Mustermann <{MAX}>", "stoerung@support.example.com", title,
                       f"<{title.replace(' ', '-')}@acme.example>",
                       "Betroffenes System: Drucker\nAuswirkung: nur ich\n"),
         MAX, "stoerung@support.example.com")
    [ticket] = tickets_titled(config, title)
    number = str(ticket["number"])
    ack = outbox.wait_for(lambda m: to(m) == MAX and f"[Ticket#{number}]" in str(m["Subject"]))
    notice = outbox.wait_for(lambda m: to(m) == ANNA and f"[Ticket#{number}]" in str(m["Subject"]))
    return number, reply_to(ack), reply_to(notice)


@pytest.fixture
def served(database_url: str, tmp_path: Path, run_cli: Any) -> Any:
    """`ticketgw serve --demo` with SMTP, the shipped defaults (`authserv_id = ""`) and the
    Maildir outbox; yields the SMTP port, the config, the CLI and the outbox."""
    smtp_port, web_port = free_port(), free_port()
    config = serve_config(tmp_path / "ticketgw.toml", database_url, smtp_port=smtp_port,
                          web_port=web_port)
    with serving(["--config", str(config), "serve", "--demo"], tmp_path,
                 f"http://127.0.0.1:{web_port}/healthz"):
        yield smtp_port, config, Cli(run_cli, config), Maildir(tmp_path / "var" / "outbox")


# -- item 5: forged staff mail -----------------------------------------------------------------

def test_serve_a_forged_staff_mail_on_the_customer_path_changes_nothing(served: Any) -> None:
    """With the shipped defaults, a mail From a staff address to the customer's reply
    address (which every customer knows) closes nothing and sends nothing to the customer;
    it is an internal note, and the staff member is told why. The staff reply address, a
    secret only in staff notices, still works."""
    port, config, cli, outbox = served
    number, customer_address, staff_address = open_ticket(port, config, outbox,
                                                          "Drucker im Flur")
    assert customer_address.startswith("support+r-") and staff_address.startswith("support+s-")
    assert all(staff_address not in m.as_string() for m in outbox.messages() if to(m) == MAX)

    forged = message(f"Anna Agent <{ANNA}>", customer_address, f"Re: [Ticket#{number}]",
                     "<forged@evil.example>", "#state closed\nErledigt. Bitte überweisen Sie "
                     "die Gebühr an IBAN XX00 0000.\n")
    smtp(port, forged, ANNA, customer_address)
    entry = cli.outcome("<forged@evil.example>")
    assert (entry["outcome"], entry["rule"]) == ("appended", "reply-token")
    assert "staff reply address" in entry["reason"] and "is told why" in entry["reason"]
    told = outbox.wait_for(lambda m: to(m) == ANNA and "interne Notiz" in str(m["Subject"]))
    assert "Antwortadresse des Kunden" in text_of(told)
    assert reply_to(told) == staff_address
    ticket = cli.ticket(number)
    assert ticket["state"] == "new"
    assert (ticket["articles"][-1]["internal"], ticket["articles"][-1]["sender"]) == (
        True, "staff")
    assert not {"staff-answer", "status"} & set(cli.events())
    assert all("IBAN" not in text_of(m) for m in outbox.messages() if to(m) == MAX)

    genuine = message(f"Anna Agent <{ANNA}>", staff_address, f"Re: [Ticket#{number}]",
                      "<genuine@example.com>", "#state closed\nDer Drucker läuft wieder.\n")
    smtp(port, genuine, ANNA, staff_address)
    answer = outbox.wait_for(lambda m: to(m) == MAX and "läuft wieder" in text_of(m))
    assert answer["From"].addresses[0].addr_spec == "support@support.example.com"
    assert cli.outcome("<genuine@example.com>")["rule"] == "staff-token"
    assert cli.ticket(number)["state"] == "closed"


# -- item 7: a typo in a command ---------------------------------------------------------------

def test_serve_a_typo_in_the_command_block_sends_nothing_to_the_customer(served: Any) -> None:
    port, config, cli, outbox = served
    number, _, staff_address = open_ticket(port, config, outbox, "Monitor flackert")

    typo = message(f"Anna Agent <{ANNA}>", staff_address, f"Re: [Ticket#{number}]",
                   "<typo@example.com>", "#internl\n#state pending\n\nDer Kunde hat "
                   "gekündigt, bitte nicht erwähnen.\n")
    smtp(port, typo, ANNA, staff_address)
    failed = outbox.wait_for(lambda m: to(m) == ANNA and "Nicht ausgeführt" in str(m["Subject"]))
    assert "#internl" in text_of(failed) and "unknown command #internl" in text_of(failed)
    assert "nichts davon ausgeführt" in text_of(failed)
    assert reply_to(failed) == staff_address
    assert "nothing carried out" in cli.outcome("<typo@example.com>")["reason"]
    ticket = cli.ticket(number)
    assert ticket["state"] == "new"                       # #state pending did not run either
    assert ticket["articles"][-1]["internal"] is True
    assert "gekündigt" in ticket["articles"][-1]["body"]

    below = message(f"Anna Agent <{ANNA}>", staff_address, f"Re: [Ticket#{number}]",
                    "<below@example.com>", "Hallo Herr Mustermann,\nwir kümmern uns.\n\n"
                    "#internal\nVertrag gekündigt.\n")
    smtp(port, below, ANNA, staff_address)
    assert "internal note" in cli.outcome("<below@example.com>")["reason"]
    assert not {"staff-answer", "status"} & set(cli.events())
    assert all("gekündigt" not in text_of(m) for m in outbox.messages() if to(m) == MAX)


# -- items 5 and 9 with authserv_id, through the MTA pipe ----------------------------------------



# what our border MTA writes for a staff mail that passed DKIM and DMARC
STAFF_PASS = (f"{MX}; dkim=pass header.d=example.com header.s=mail; "
              "dmarc=pass header.from=example.com")


def vouched_desk(run_cli: Any, database_url: str, tmp_path: Path, *,
                 extra: str = DESK_WITH_STAFF, inbound: str = "") -> Cli:
    """A config (`extra` added to the base) whose border MTA `MX` vouches for senders
    (`authserv_id`; `inbound`: more `[inbound]` lines), a migrated database and the
    customer Max (organisation acme)."""
    config = write_config(tmp_path / "ticketgw.toml", database_url, extra=extra)
    config.write_text(config.read_text().replace(
        '[inbound]\nsmtp = ""', f'[inbound]\nsmtp = ""\nauthserv_id = "{MX}"\n{inbound}'))
    cli = Cli(run_cli, config)
    cli("db", "upgrade")
    cli("customer", "add", "mmuster", MAX, "--name", "Max Mustermann", "--org", "acme")
    return cli


@pytest.fixture
def piped(database_url: str, tmp_path: Path, run_cli: Any) -> Cli:
    """A config with `authserv_id` set, a migrated database and the customer Max."""
    return vouched_desk(run_cli, database_url, tmp_path)


def ingest(cli: Cli, mail: EmailMessage, recipient: str, sender: str) -> dict[str, Any]:
    """`ticketgw ingest` as Postfix's pipe runs it; the mail's processing-log entry."""
    cli("ingest", "--recipient", recipient, "--sender", sender, input=mail.as_bytes())
    return cli.outcome(str(mail["Message-ID"]), timeout=0)


def dmarc(result: str, domain: str = "acme.example") -> str:
    return f"{MX}; spf=pass smtp.mailfrom={domain}; dmarc={result} header.from={domain}"


def max_opens(cli: Cli, subject: str, message_id: str, body: str) -> str:
    """Max's new ticket by mail (his domain's DMARC passing), through `ingest`; its number."""
    opened = ingest(cli, message(f"Max Mustermann <{MAX}>", "incident@support.example.com",
                                 subject, message_id, body,
                                 Authentication_Results=dmarc("pass")),
                    "incident@support.example.com", MAX)
    return str(opened["ticket"])


def test_ingest_customer_mail_failing_dmarc_is_not_appended_as_the_customer(piped: Cli) -> None:
    cli = piped
    number = max_opens(cli, "Drucker defekt", "<d1@acme.example>", "Er druckt nicht.\n")
    [ack] = [m for e, _, m in cli.outbox() if e == "ack"]
    customer_address = reply_to(ack)

    forged = message(f"Max Mustermann <{MAX}>", customer_address,
                     f"Re: Drucker defekt [Ticket#{number}]", "<d2@evil.example>",
                     "Bitte schicken Sie die Rechnung an billing@evil.example.\n",
                     Authentication_Results=dmarc("fail"))
    explained = cli.json("explain", "-", "-r", customer_address, input=forged.as_bytes())
    assert explained["outcome"] == "created (a new ticket from an unverified sender)"
    assert explained["sender_check"].startswith("fail:")
    assert explained["auto_reply"].startswith("no acknowledgment")

    entry = ingest(cli, forged, customer_address, "bounce@evil.example")
    assert entry["outcome"] == "created" and entry["ticket"] != number
    assert f"not appended as the customer of ticket {number}" in entry["reason"]
    assert "dmarc=fail for acme.example" in entry["reason"]
    assert len(cli.ticket(number)["articles"]) == 1          # nothing appended as Max
    unverified = cli.ticket(str(entry["ticket"]))
    assert unverified["customer"] is None and unverified["contact"] == MAX
    assert any(h["field"] == "unverified" for h in unverified["history"])
    new_mails = [(e, r, m) for e, r, m in cli.outbox()
                 if f"[Ticket#{entry['ticket']}]" in str(m["Subject"])]
    assert [(e, r) for e, r, _ in new_mails] == [("staff-notify", [ANNA])]   # no ack to Max
    notice = new_mails[0][2]
    assert str(notice["Subject"]).startswith("[nicht bestätigt]")
    assert "DMARC" in text_of(notice) and f"Ticket {number}" in text_of(notice)
    assert "dmarc=fail for acme.example" in text_of(notice)

    genuine = message(f"Max Mustermann <{MAX}>", customer_address, f"Re: [Ticket#{number}]",
                      "<d3@acme.example>", "Noch immer defekt.\n",
                      Authentication_Results=dmarc("pass"))
    assert ingest(cli, genuine, customer_address, MAX)["outcome"] == "appended"
    no_dmarc = message(f"Max Mustermann <{MAX}>", customer_address, f"Re: [Ticket#{number}]",
                       "<d4@acme.example>", "Und jetzt?\n",
                       Authentication_Results=dmarc("none"))    # a domain without DMARC
    assert ingest(cli, no_dmarc, customer_address, MAX)["outcome"] == "appended"
    assert len(cli.ticket(number)["articles"]) == 3


def test_ingest_staff_mail_acts_only_with_our_mtas_pass(piped: Cli) -> None:
    cli = piped
    number = max_opens(cli, "VPN bricht ab", "<v1@acme.example>", "Seit heute.\n")
    [notice] = [m for e, _, m in cli.outbox() if e == "staff-notify"]
    staff_address = reply_to(notice)

    def staff_mail(message_id: str, results: str) -> EmailMessage:
        return message(f"Anna Agent <{ANNA}>", staff_address, f"Re: [Ticket#{number}]",
                       message_id, "#state closed\nIst behoben.\n",
                       Authentication_Results=results)

    for message_id, results in [
            ("<v2@evil.example>", f"{MX}; dmarc=fail header.from=example.com"),
            ("<v3@evil.example>", "mx.evil.example; dmarc=pass header.from=example.com"),
            ("<v4@evil.example>", f"{MX}; spf=pass smtp.mailfrom=example.com")]:
        entry = ingest(cli, staff_mail(message_id, results), staff_address, ANNA)
        assert (entry["outcome"], entry["rule"]) == ("appended", "staff-token")
        assert "does not vouch for it" in entry["reason"], entry
        assert cli.ticket(number)["state"] == "new"
    told = [m for e, _, m in cli.outbox() if e == "kept-as-note"]
    assert len(told) == 3 and "kein DMARC- oder DKIM-Pass" in text_of(told[0])
    assert not {"staff-answer", "status"} & set(cli.events())

    passing = staff_mail("<v5@example.com>", f"{MX}; dkim=pass header.d=example.com "
                                             "header.s=mail; dmarc=pass header.from=example.com")
    explained = cli.json("explain", "-", "-r", staff_address, input=passing.as_bytes())
    assert (explained["rule"], explained["sender_is"]) == ("staff-token", "staff")
    assert explained["staff_commands"].startswith("#state closed; the answer goes to")
    entry = ingest(cli, passing, staff_address, ANNA)
    assert "answer sent to the customer" in entry["reason"]
    assert cli.ticket(number)["state"] == "closed"


def test_ingest_a_staff_answer_opens_a_new_ticket_without_a_status_mail(piped: Cli) -> None:
    cli = piped
    number = max_opens(cli, "Monitor flackert", "<m1@acme.example>", "Seit dem Update.\n")
    assert cli.ticket(number)["state"] == "new"
    [notice] = [m for e, _, m in cli.outbox() if e == "staff-notify"]
    passing = STAFF_PASS
    entry = ingest(cli, message(f"Anna Agent <{ANNA}>", reply_to(notice),
                                f"Re: [Ticket#{number}]", "<m2@example.com>",
                                "Bitte starten Sie den Rechner neu.\n",
                                Authentication_Results=passing), reply_to(notice), ANNA)
    assert entry["reason"].endswith("answer sent to the customer; new -> open"), entry
    ticket = cli.ticket(number)
    assert ticket["state"] == "open"
    assert [(h["field"], h["old"], h["new"]) for h in ticket["history"]
            if h["field"] == "state"][-1] == ("state", "new", "open")
    assert "staff-answer" in cli.events() and "status" not in cli.events()

    # an answer to a ticket that is open already changes no state
    entry = ingest(cli, message(f"Anna Agent <{ANNA}>", reply_to(notice),
                                f"Re: [Ticket#{number}]", "<m3@example.com>", "Und?\n",
                                Authentication_Results=passing), reply_to(notice), ANNA)
    assert entry["reason"].endswith("answer sent to the customer"), entry


def test_check_config_warns_while_authserv_id_is_empty(run_cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "ticketgw.toml"
    assert run_cli("init", str(path)).exit_code == 0
    checked = run_cli("--config", str(path), "check-config")
    assert checked.exit_code == 0 and checked.stdout.startswith(f"ok: {path}")
    assert "config warning:" in checked.stderr
    assert "inbound.authserv_id is empty" in checked.stderr
    path.write_text(path.read_text().replace('authserv_id = ""', f'authserv_id = "{MX}"'))
    checked = run_cli("--config", str(path), "check-config")
    assert checked.exit_code == 0 and "warning" not in checked.stderr
