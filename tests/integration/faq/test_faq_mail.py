"""The FAQ by mail on both databases: questions answered, "not solved" replies ticketed,
automatic mail ignored, acknowledgments with suggestions.

First the whole service (`ticketgw serve --demo`, real SMTP in, the Maildir outbox out, the
CLI to look), then the details in-process through intake and the worker.
"""

from __future__ import annotations

import json
import re
import smtplib
import subprocess
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from gateway.app import App, build_app, prepare_database
from gateway.tickets.customers import NewCustomer, add_customer
from gateway.tickets.queries import ticket_detail
from tests.conftest import make_settings
from tests.integration.faq.test_faq import load_demo_faq
from tests.integration.outbound.test_answers import deliver, outbox
from tests.maildir import Maildir
from tests.serve_helpers import TICKETGW, free_port, serve_config, serving, stop_cleanly

FAQ_ADDRESS = "faq@support.example.com"
BASE_URL = "http://127.0.0.1:8080"


def question(subject: str, body: str, sender: str = "max.mustermann@acme.example",
             message_id: str | None = None, **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = FAQ_ADDRESS
    message["Subject"] = subject
    message["Message-ID"] = message_id or f"<{abs(hash(subject + body + sender))}@acme.example>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


def text_of(message: Any) -> str:
    return str(message.get_body(preferencelist=("plain",)).get_content())


# -- the whole service -------------------------------------------------------------------

def cli_json(config: Path, *args: str) -> Any:
    done = subprocess.run([*TICKETGW, "--config", str(config), *args, "--json"],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def processed(config: Path, message_id: str, timeout: float = 30) -> dict[str, Any]:
    """The processing log's entry of a mail, once the worker has decided."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in cli_json(config, "inbound", "list"):
            if entry["message_id"] == message_id and entry["outcome"] != "pending":
                return dict(entry)
        time.sleep(0.2)
    raise AssertionError(f"{message_id} was not processed in time")


@pytest.fixture
def service(database_url: str, tmp_path: Path) -> Iterator[tuple[Path, int]]:
    smtp_port, web_port = free_port(), free_port()
    config = serve_config(tmp_path / "ticketgw.toml", database_url, smtp_port=smtp_port,
                          web_port=web_port)
    with serving(["--config", str(config), "serve", "--demo"], tmp_path,
                 f"http://127.0.0.1:{web_port}/healthz") as process:
        yield config, smtp_port
        assert "Traceback" not in stop_cleanly(process)


def test_faq_mail_through_serve(service: tuple[Path, int], tmp_path: Path) -> None:
    config, smtp_port = service
    maildir = Maildir(tmp_path / "var" / "outbox")

    def send(message: EmailMessage, sender: str | None = None) -> None:
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
            client.send_message(message, from_addr=sender)

    tickets_before = len(cli_json(config, "ticket", "list"))
    asked = question("Passwort abgelaufen", "Hallo,\nmein Passwort ist abgelaufen und ich "
                     "komme nicht mehr rein. Was muss ich tun?\nGruß Max",
                     message_id="<q1@acme.example>")
    send(asked)
    answer = maildir.wait_for(lambda m: m["In-Reply-To"] == "<q1@acme.example>")
    assert answer["From"].addresses[0].addr_spec == FAQ_ADDRESS
    assert answer["Auto-Submitted"] == "auto-replied"
    body = text_of(answer)
    assert "Passwort vergessen oder abgelaufen" in body
    assert f"{BASE_URL}/faq/passwort-vergessen" in body
    assert '"nicht gelöst"' in body
    logged = processed(config, "<q1@acme.example>")
    assert (logged["outcome"], logged["rule"], logged["ticket"]) == ("ignored", "faq-address",
                                                                     None)
    assert "answered with 1 article(s): passwort-vergessen" in logged["reason"]
    assert len(cli_json(config, "ticket", "list")) == tickets_before

    robot = question("Störungsmeldung Monitoring", "Disk full on host x",
                     sender="monitor@acme.example", message_id="<robot@acme.example>",
                     Auto_Submitted="auto-generated")
    send(robot)
    logged = processed(config, "<robot@acme.example>")
    assert (logged["outcome"], logged["rule"]) == ("ignored", "faq-address")
    assert "not answered" in logged["reason"]

    reply = question("Re: " + str(answer["Subject"]), "Nicht gelöst, der Code per SMS kommt "
                     "nicht an.\n\nAm 30.11.2026 schrieb Service Desk:\n> " +
                     body.replace("\n", "\n> "), message_id="<q1-reply@acme.example>",
                     In_Reply_To=str(answer["Message-ID"]),
                     References=f"<q1@acme.example> {answer['Message-ID']}")
    send(reply)
    logged = processed(config, "<q1-reply@acme.example>")
    assert (logged["outcome"], logged["rule"]) == ("created", "faq-not-solved")
    shown = cli_json(config, "ticket", "show", logged["ticket"])
    assert shown["title"] == "Passwort abgelaufen" and shown["customer"] == "mmuster"
    assert [a["message_id"] for a in shown["articles"]] == ["<q1@acme.example>",
                                                            "<q1-reply@acme.example>"]
    assert "mein Passwort ist abgelaufen" in shown["articles"][0]["body"]
    maildir.wait_for(lambda m: f"Ticket#{logged['ticket']}" in str(m["Subject"])
                     and m["In-Reply-To"] == "<q1-reply@acme.example>")
    assert not [m for m in maildir.messages() if m["In-Reply-To"] == "<robot@acme.example>"]


# -- details, in-process -----------------------------------------------------------------

@pytest.fixture
def faq_app(database_url: str, tmp_path: Path) -> Iterator[App]:
    settings = make_settings(database_url, tmp_path / "data",
                             faq={"address": FAQ_ADDRESS, "max_answers": 2},
                             outbound={"max_auto_replies_per_hour": 3})
    built = build_app(settings)
    prepare_database(built, migrate=False)
    load_demo_faq(built)
    with built.db.write() as session:
        add_customer(session, NewCustomer("mmuster", "max@acme.example", "Max Muster", "acme",
                                          "de"))
    yield built
    built.close()


def rule_of(app: App, done: Any) -> str:
    from sqlalchemy import select

    from gateway.store.models import ReceivedMail, table_of
    received = table_of(ReceivedMail)
    with app.db.read() as session:
        return str(session.execute(select(received.c.rule)
                                   .where(received.c.id == done.mail_id)).scalar_one())


def answers_to(app: App, message_id: str) -> list[Any]:
    return [m for e, _, m in outbox(app) if e == "faq-answer" and m["In-Reply-To"] == message_id]


def test_customers_get_customers_only_articles_strangers_do_not(faq_app: App) -> None:
    ask = "E-Mail auf dem Smartphone"
    deliver(faq_app, question(ask, "Wie richte ich Outlook auf dem Smartphone ein?",
                              sender="max@acme.example", message_id="<m1@x>"),
            recipient=FAQ_ADDRESS)
    deliver(faq_app, question(ask, "Wie richte ich Outlook auf dem Smartphone ein?",
                              sender="fremd@example.org", message_id="<m2@x>"),
            recipient=FAQ_ADDRESS)
    [customer] = answers_to(faq_app, "<m1@x>")
    [stranger] = answers_to(faq_app, "<m2@x>")
    assert "/faq/email-auf-dem-smartphone" in text_of(customer)
    assert "/faq/email-auf-dem-smartphone" not in text_of(stranger)
    assert "keinen passenden Artikel" in text_of(stranger)


def test_the_answer_is_in_the_question_language_at_most_max_answers(faq_app: App) -> None:
    [done] = deliver(faq_app, question("Printer problem", "The printer only prints blank "
                                       "pages and the print queue is full. What can I do?",
                                       sender="someone@example.org", message_id="<en@x>"),
                     recipient=FAQ_ADDRESS)
    [answer] = answers_to(faq_app, "<en@x>")
    body = text_of(answer)
    assert "These articles from our FAQ may help" in body
    assert f"{BASE_URL}/faq/printer-blank-pages" in body
    assert body.count(f"{BASE_URL}/faq/") - body.count(f"{BASE_URL}/faq.") <= 2
    assert done.outcome == "ignored" and rule_of(faq_app, done) == "faq-address"


def test_faq_answers_are_rate_limited_like_acknowledgments(faq_app: App) -> None:
    results = [deliver(faq_app, question(f"VPN {i}", "Die VPN-Verbindung bricht ab",
                                         message_id=f"<vpn{i}@x>", sender="max@acme.example"),
                       recipient=FAQ_ADDRESS)[0] for i in range(4)]
    assert [bool(answers_to(faq_app, f"<vpn{i}@x>")) for i in range(4)] == [True] * 3 + [False]
    assert "reached the limit of 3 automatic answers per hour" in results[3].reason
    assert results[3].outcome == "ignored"


def test_a_second_not_solved_reply_joins_the_ticket(faq_app: App) -> None:
    deliver(faq_app, question("VPN bricht ab", "Die VPN-Verbindung bricht ständig ab.",
                              sender="max@acme.example", message_id="<v@x>"),
            recipient=FAQ_ADDRESS)
    [answer] = answers_to(faq_app, "<v@x>")
    first = question("Re: VPN", "nicht gelöst", sender="max@acme.example",
                     message_id="<v2@x>", In_Reply_To=str(answer["Message-ID"]))
    [opened] = deliver(faq_app, first, recipient=FAQ_ADDRESS)
    assert (opened.outcome, rule_of(faq_app, opened)) == ("created", "faq-not-solved")
    second = question("Re: VPN", "Immer noch nicht gelöst!", sender="max@acme.example",
                      message_id="<v3@x>", In_Reply_To=str(answer["Message-ID"]))
    [joined] = deliver(faq_app, second, recipient=FAQ_ADDRESS)
    assert (joined.outcome, rule_of(faq_app, joined), joined.ticket_number) == (
        "appended", "in-reply-to", opened.ticket_number)
    with faq_app.db.read() as session:
        detail = ticket_detail(session, opened.ticket_number)
    assert detail is not None and detail["queue"] == "servicedesk"
    assert len(detail["articles"]) == 3


def test_thanks_to_an_faq_answer_changes_nothing(faq_app: App) -> None:
    deliver(faq_app, question("VPN", "Die VPN-Verbindung bricht ständig ab.",
                              sender="max@acme.example", message_id="<t@x>"),
            recipient=FAQ_ADDRESS)
    [answer] = answers_to(faq_app, "<t@x>")
    [done] = deliver(faq_app, question("Re: VPN", "Danke, hat geholfen!",
                                       sender="max@acme.example", message_id="<t2@x>",
                                       In_Reply_To=str(answer["Message-ID"])),
                     recipient=FAQ_ADDRESS)
    assert (done.outcome, rule_of(faq_app, done)) == ("ignored", "faq-reply")
    assert len([e for e, _, _ in outbox(faq_app) if e == "faq-answer"]) == 1


def test_acknowledgments_suggest_matching_articles_only(faq_app: App) -> None:
    from tests.integration.outbound.test_answers import mail

    deliver(faq_app, mail("Drucker im 2. OG druckt nicht", sender="max@acme.example",
                          body="Seit heute Morgen druckt der Drucker nur leere Seiten.\n",
                          message_id="<p@x>"))
    deliver(faq_app, mail("Kaffeemaschine kaputt", sender="max@acme.example",
                          body="Die Kaffeemaschine in der Küche tropft.\n", message_id="<k@x>"))
    acks = {m["In-Reply-To"]: m for e, _, m in outbox(faq_app) if e == "ack"}
    printer = text_of(acks["<p@x>"])
    assert "Vielleicht hilft Ihnen schon einer dieser Artikel" in printer
    assert f"{BASE_URL}/faq/drucker-leere-seiten" in printer
    assert "FAQ" not in text_of(acks["<k@x>"])


def test_no_suggestions_without_faq_content_or_when_turned_off(database_url: str,
                                                               tmp_path: Path) -> None:
    from tests.integration.outbound.test_answers import mail

    for name, faq, load in (("empty", {"address": FAQ_ADDRESS}, False),
                            ("off", {"address": FAQ_ADDRESS, "max_suggestions": 0}, True)):
        settings = make_settings(database_url, tmp_path / name, faq=faq)
        app = build_app(settings)
        prepare_database(app, migrate=False)
        if load:
            load_demo_faq(app)
        deliver(app, mail(f"Drucker druckt leere Seiten {name}", sender="max@acme.example",
                          body="Der Drucker druckt nur leere Seiten.\n",
                          message_id=f"<{name}@x>"))
        [ack] = [m for e, _, m in outbox(app) if e == "ack" and m["In-Reply-To"] == f"<{name}@x>"]
        assert "FAQ" not in text_of(ack)
        app.close()


def test_explain_says_a_faq_question_would_be_answered(run_cli: Any, database_url: str,
                                                      tmp_path: Path) -> None:
    from tests.conftest import write_config

    config = write_config(tmp_path / "ticketgw.toml", database_url, extra=(
        '\n[faq]\naddress = "faq@support.example.com"\n\n[[queue]]\nid = "servicedesk"\n'
        'from = "Service Desk <support@support.example.com>"\n'))
    mail = tmp_path / "q.eml"
    mail.write_bytes(question("VPN bricht ab", "Die VPN-Verbindung bricht ab.").as_bytes())
    result = run_cli("--config", str(config), "explain", str(mail), "-r", FAQ_ADDRESS,
                     "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["outcome"], report["rule"]) == ("ignored", "faq-address")
    assert report["auto_reply"].startswith("would be answered with matching FAQ articles")


def faq_links(message: Any) -> list[str]:
    return re.findall(rf"{re.escape(BASE_URL)}/faq/([\w-]+)", text_of(message))


@pytest.mark.parametrize("subject, body, language, expected", [
    ("VPN FortiClient", "Die VPN-Verbindung bricht im Homeoffice ständig ab, was kann ich tun?",
     "de", ["vpn-verbindung-bricht-ab"]),
    ("VPN FortiClient", "The VPN connection keeps dropping when I work from home, what can "
     "I do about it?", "en", ["vpn-keeps-disconnecting"]),
])
def test_a_question_gets_only_articles_in_its_language(
        faq_app: App, subject: str, body: str, language: str, expected: list[str]) -> None:
    """Both FAQ languages have a VPN article that matches; the answer has only the one in
    the question's language, and its text and HTML are in that language."""
    message_id = f"<vpn-{language}@x>"
    [done] = deliver(faq_app, question(subject, body, sender="someone@example.org",
                                       message_id=message_id), recipient=FAQ_ADDRESS)
    [answer] = answers_to(faq_app, message_id)
    assert faq_links(answer) == expected
    html = str(answer.get_body(preferencelist=("html",)).get_content())
    intro = {"de": "Diese Artikel aus unseren FAQ passen dazu", "en": "These articles from "
             "our FAQ may help"}[language]
    assert intro in text_of(answer) and intro in html
    assert f"answered with 1 article(s): {expected[0]}" in done.reason


def test_the_stored_language_of_a_customer_comes_first(faq_app: App) -> None:
    """mmuster is stored as German: an English question gets the German article."""
    [_] = deliver(faq_app, question("VPN FortiClient", "The VPN connection keeps dropping "
                                    "when I work from home, what can I do about it?",
                                    sender="max@acme.example", message_id="<vpn-mm@x>"),
                  recipient=FAQ_ADDRESS)
    [answer] = answers_to(faq_app, "<vpn-mm@x>")
    assert faq_links(answer) == ["vpn-verbindung-bricht-ab"]
    assert "vielen Dank für Ihre Frage" in text_of(answer)


def test_no_article_in_the_question_language_falls_back_and_says_so(faq_app: App) -> None:
    """Only a German article knows "Papierstau": an English question gets it, in an English
    mail that says the article is in another language."""
    [done] = deliver(faq_app, question("Papierstau", "What does the Papierstau Fehlermeldung "
                                       "mean? I see it on the screen every morning.",
                                       sender="someone@example.org", message_id="<jam@x>"),
                     recipient=FAQ_ADDRESS)
    [answer] = answers_to(faq_app, "<jam@x>")
    body = text_of(answer)
    assert faq_links(answer) == ["drucker-papierstau"]
    assert "We found no matching article in English. These articles in another language" \
        in body
    assert "Papierstau-Meldung, obwohl kein Papier klemmt (German)" in body
    html = str(answer.get_body(preferencelist=("html",)).get_content())
    assert 'lang="de">Papierstau-Meldung, obwohl kein Papier klemmt</a> (German)' in html
    assert "answered with 1 article(s) in other languages (none in en): drucker-papierstau" \
        in done.reason
