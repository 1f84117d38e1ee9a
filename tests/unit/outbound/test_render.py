"""The mail renderer: every event in both languages, parsed back with the stdlib."""

from __future__ import annotations

import email
import email.policy
import os
import re
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.mail.attachment_scan import ScannedFile
from gateway.outbound import render
from gateway.outbound.headers import AUTO_RESPONSE_SUPPRESS, HeaderError, MailIdentity
from gateway.outbound.mail import EVENTS
from gateway.outbound.render import (
    OPTIONAL_CONTEXT,
    REQUIRED_CONTEXT,
    FaqArticle,
    GuideAnswer,
    MailRenderer,
    RenderError,
    default_templates_dir,
)

BASE_URL = "https://desk.example.com"
NUMBER = "2026112710000017"
QUEUE = MailIdentity("Service Desk", "support@support.example.com")
CUSTOMER = ("Jürgen Müller", "juergen.mueller@kunde.example.org")
STAFF = ("Anna Agent", "anna.agent@example.com")
NOW = datetime(2026, 11, 27, 14, 30, tzinfo=UTC)
EXPIRES = datetime(2026, 11, 28, 14, 30, tzinfo=UTC)
THREAD = ("<first.1@kunde.example.org>", "<ticketgw.0123456789abcdef@support.example.com>")
ANSWERED = "<CAF=x9+yz@mail.kunde.example.org>"

# Realistic data for every event; `expect` lists text each body must show.
CASES: dict[str, dict[str, Any]] = {
    "ack": {
        "context": {
            "customer_name": "Jürgen Müller", "title": "Störung: Drucker im 2. OG",
            "template_name": "Allgemeine Störungsmeldung", "priority": 4,
            "answers": [GuideAnswer("Betroffenes System", "HP LaserJet 4250"),
                        ("Raum", "2.14")],
            "missing": ["Seit wann"],
        },
        "ticket": True, "to": CUSTOMER,
        "expect": [NUMBER, "Störung: Drucker im 2. OG", "Allgemeine Störungsmeldung",
                   "Betroffenes System", "HP LaserJet 4250", "Seit wann:",
                   f"{BASE_URL}/tickets/{NUMBER}"],
        "expect_lang": {"de": ["4 hoch", "Bezeichnung: Antwort"],
                        "en": ["4 high", "Label: answer"]},
    },
    "follow-up": {
        "context": {"customer_name": "Jürgen Müller", "title": "Störung: Drucker im 2. OG"},
        "ticket": True, "to": CUSTOMER,
        "expect": [NUMBER, f"{BASE_URL}/tickets/{NUMBER}"],
    },
    "status": {
        "context": {"customer_name": "Jürgen Müller", "title": "Störung: Drucker im 2. OG",
                    "old_state": "open", "new_state": "closed"},
        "ticket": True, "to": CUSTOMER,
        "expect": [NUMBER],
        "expect_lang": {"de": ["offen", "geschlossen"], "en": ["open", "closed"]},
    },
    "staff-answer": {
        "context": {"customer_name": "Jürgen Müller", "title": "Störung: Drucker im 2. OG",
                    "agent_name": "Anna Agent",
                    "body": "der Drucker läuft wieder.\nBitte testen Sie <kurz> & geben "
                            "Sie Bescheid."},
        "ticket": True, "to": CUSTOMER,
        "expect": ["der Drucker läuft wieder.", "Anna Agent"],
    },
    "reject": {
        "context": {"customer_name": "", "reason": "no-subject", "original_subject": ""},
        "ticket": False, "to": CUSTOMER,
        "expect": [],
        "expect_lang": {"de": ["keinen Betreff"], "en": ["no subject"]},
    },
    "staff-notify": {
        "context": {"kind": "new", "customer_name": "Jürgen Müller",
                    "customer_address": "juergen.mueller@kunde.example.org",
                    "title": "Störung: Drucker im 2. OG",
                    "body": "Seit heute früh druckt der Drucker nur leere Seiten.",
                    "priority": 3, "template_name": "Allgemeine Störungsmeldung"},
        "ticket": True, "to": STAFF,
        "reply_to": "ticket+ab12cd34@support.example.com",
        "expect": [NUMBER, "leere Seiten", "#state closed", "#priority 4", "#internal"],
    },
    "delivery-failed": {
        "context": {"recipient": "alt@kunde.example.org",
                    "original_subject": "Ihre Anfrage ist eingegangen: Drucker",
                    "diagnostic": "550 5.1.1 <alt@kunde.example.org>: Recipient address "
                                  "rejected: User unknown"},
        "ticket": True, "to": STAFF,
        "expect": ["alt@kunde.example.org", "550 5.1.1", NUMBER],
    },
    "command-failed": {
        "context": {"agent_name": "Anna Agent", "title": "Störung: Drucker im 2. OG",
                    "errors": [("#state erledigt", "'erledigt' is not a state")]},
        "ticket": True, "to": STAFF, "reply_to": "support+s-ab12cd34ef56gh78@support.example.com",
        "expect": [NUMBER, "#state erledigt", "is not a state"],
        "expect_lang": {"de": ["nichts davon ausgeführt", "interne Notiz"],
                        "en": ["nothing of it was carried out", "internal note"]},
    },
    "kept-as-note": {
        "context": {"agent_name": "Anna Agent", "title": "Störung: Drucker im 2. OG",
                    "path": "reply-token", "detail": ""},
        "ticket": True, "to": STAFF, "reply_to": "support+s-ab12cd34ef56gh78@support.example.com",
        "expect": [NUMBER],
        "expect_lang": {"de": ["interne Notiz", "Antwortadresse des Kunden"],
                        "en": ["internal note", "the customer's reply address"]},
    },
    "password-token": {
        "context": {"customer_name": "Jürgen Müller", "username": "jmueller",
                    "token": "Zq3-x_9/abc+", "expires": EXPIRES, "password_mode": "mail"},
        "ticket": False, "to": CUSTOMER,
        "expect": [f"{BASE_URL}/password/confirm?token=Zq3-x_9%2Fabc%2B", "jmueller"],
        "expect_lang": {"de": ["28.11.2026, 14:30 Uhr"], "en": ["2026-11-28 14:30"]},
    },
    "new-password": {
        "context": {"customer_name": "Jürgen Müller", "username": "jmueller",
                    "password": "kX7#pw-Ü2"},
        "ticket": False, "to": CUSTOMER,
        "expect": ["kX7#pw-Ü2", f"{BASE_URL}/login"],
    },
    "file-link": {
        "context": {"customer_name": "Jürgen Müller", "token": "f1le70ken", "expires": EXPIRES},
        "ticket": True, "to": CUSTOMER,
        "expect": [f"{BASE_URL}/files/f1le70ken", NUMBER],
    },
    "faq-answer": {
        "context": {"customer_name": "Jürgen Müller", "question": "VPN verbindet nicht",
                    "articles": [
                        FaqArticle("VPN-Client neu einrichten", "So richten Sie den Client "
                                   "nach einem Update neu ein.", f"{BASE_URL}/faq/12"),
                        {"title": "Passwort abgelaufen", "extract": "Wenn die Anmeldung "
                         "scheitert …", "url": f"{BASE_URL}/faq/7"},
                    ]},
        "ticket": False, "to": CUSTOMER,
        "expect": ["VPN-Client neu einrichten", f"{BASE_URL}/faq/12", "Passwort abgelaufen"],
    },
    "staff-digest": {
        "context": {"staff_name": "Anna Agent", "queues": ["Service Desk"], "as_of": EXPIRES,
                    "entries": [{
                        "number": NUMBER, "title": "Störung: Drucker im 2. OG",
                        "state": "open", "priority": 4, "queue": "servicedesk",
                        "customer": "Jürgen Müller", "created": EXPIRES, "age_hours": 75,
                        "assignee": "", "due": EXPIRES, "urgency": "overdue",
                        "staff_address": "support+s-ab12cd34ef56gh78@support.example.com"}]},
        "ticket": False, "to": STAFF,
        "expect": [NUMBER, "Jürgen Müller", "support+s-ab12cd34ef56gh78@support.example.com"],
        "expect_lang": {"de": ["3 Tage", "ÜBERFÄLLIG", "niemand"],
                        "en": ["3 days", "OVERDUE", "nobody"]},
    },
    "guide-complete": {
        "context": {"customer_name": "Jürgen Müller", "title": "Störung: Drucker im 2. OG",
                    "answers": [GuideAnswer("Betroffenes System", "HP LaserJet 4250"),
                                GuideAnswer("Grund", "Umzug <3. OG>")]},
        "ticket": True, "to": CUSTOMER,
        "expect": [NUMBER, "HP LaserJet 4250", "Betroffenes System (",
                   f"{BASE_URL}/tickets/{NUMBER}"],
        "expect_lang": {"de": ["jetzt alle", "(neu)"], "en": ["we now have every", "(new)"]},
    },
    "sla-reminder": {
        "context": {"title": "Störung: Drucker im 2. OG", "priority": 4,
                    "target": "first-response", "due": EXPIRES},
        "ticket": True, "to": STAFF, "reply_to": "support+s-ab12cd34ef56gh78@support.example.com",
        "expect": [NUMBER, "Störung: Drucker im 2. OG"],
        "expect_lang": {"de": ["erste Antwort an den Kunden", "28.11.2026, 14:30 Uhr"],
                        "en": ["first response to the customer", "2026-11-28 14:30"]},
    },
    "sla-escalation": {
        "context": {"title": "Störung: Drucker im 2. OG", "priority": 4, "target": "solution",
                    "due": EXPIRES, "assignee": "anna.agent@example.com"},
        "ticket": True, "to": ("", "lead@example.com"),
        "reply_to": "support+s-ab12cd34ef56gh78@support.example.com",
        "expect": [NUMBER, "anna.agent@example.com"],
        "expect_lang": {"de": ["wurde verpasst", "Lösung (Ticket geschlossen)"],
                        "en": ["was missed", "solution (ticket closed)"]},
    },
    "pending-reminder": {
        "context": {"customer_name": "Jürgen Müller", "title": "Störung: Drucker im 2. OG",
                    "close_on": EXPIRES},
        "ticket": True, "to": CUSTOMER,
        "expect": [NUMBER, f"{BASE_URL}/tickets/{NUMBER}"],
        "expect_lang": {"de": ["warten noch auf Ihre Antwort", "28.11.2026, 14:30 Uhr"],
                        "en": ["still waiting for your answer", "2026-11-28 14:30"]},
    },
    "pending-closed": {
        "context": {"customer_name": "Jürgen Müller", "title": "Störung: Drucker im 2. OG",
                    "days": 7},
        "ticket": True, "to": CUSTOMER,
        "expect": [NUMBER, f"{BASE_URL}/tickets/{NUMBER}"],
        "expect_lang": {"de": ["7 Tage", "geschlossen"], "en": ["7 days", "closed it"]},
    },
}


@pytest.fixture
def renderer() -> MailRenderer:
    return MailRenderer(base_url=BASE_URL + "/")


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def bodies(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def render_case(renderer: MailRenderer, event: str, language: str, **extra: Any) -> Any:
    case = CASES[event]
    options: dict[str, Any] = {
        "sender": QUEUE, "to": [case["to"]], "now": NOW,
        "ticket_number": NUMBER if case["ticket"] else None,
        "in_reply_to": ANSWERED, "references": THREAD, "ticket_id": 17,
        "reply_to": case.get("reply_to"),
    }
    options.update(extra)
    return renderer.render(event, language, case["context"], **options)


def test_cases_cover_every_event() -> None:
    assert set(CASES) == set(EVENTS) == set(REQUIRED_CONTEXT)


@pytest.mark.parametrize("language", ["de", "en"])
@pytest.mark.parametrize("event", EVENTS)
def test_every_event_renders_and_parses_back(renderer: MailRenderer, event: str,
                                             language: str) -> None:
    case = CASES[event]
    mail = render_case(renderer, event, language)
    raw = mail.raw

    # the envelope and the contract
    assert mail.event == event
    assert mail.envelope_from == "support@support.example.com"
    assert mail.recipients == (case["to"][1],)
    assert mail.ticket_id == 17
    assert re.fullmatch(r"<ticketgw\.[0-9a-f]{16}@support\.example\.com>", mail.message_id)

    # SMTP-safe bytes: CRLF only, short lines, 7-bit
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert raw.isascii()

    message = parse(raw)
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert message["Message-ID"] == mail.message_id
    assert message["MIME-Version"] == "1.0"
    assert message["Date"].datetime == NOW
    assert message["In-Reply-To"] == ANSWERED
    assert message["References"].split() == [*THREAD, ANSWERED]
    assert message["X-Auto-Response-Suppress"] == AUTO_RESPONSE_SUPPRESS
    assert "Precedence" not in message
    to = message["To"].addresses
    assert [(a.display_name, a.addr_spec) for a in to] == [case["to"]]
    sender = message["From"].addresses[0]
    assert sender.addr_spec == "support@support.example.com"
    if event == "staff-answer":
        assert sender.display_name == "Anna Agent via Service Desk"
        assert "Auto-Submitted" not in message           # a person wrote it
    else:
        assert sender.display_name == "Service Desk"
        expected = "auto-replied" if event in ("ack", "follow-up", "reject", "faq-answer",
                                               "guide-complete") \
            else "auto-generated"
        assert message["Auto-Submitted"] == expected
    if case.get("reply_to"):
        assert message["Reply-To"].addresses[0].addr_spec == case["reply_to"]
    else:
        assert "Reply-To" not in message

    subject = str(message["Subject"])
    assert "\n" not in subject and subject.strip() == subject
    if case["ticket"]:
        assert subject.endswith(f" [Ticket#{NUMBER}]")
        assert subject.count("[Ticket#") == 1
    else:
        assert "[Ticket#" not in subject

    text, html = bodies(message)
    assert "<html" not in text and html.lstrip().startswith("<!DOCTYPE html>")
    assert f'lang="{language}"' in html
    wanted = case["expect"] + case.get("expect_lang", {}).get(language, [])
    for fragment in wanted:
        assert fragment in text, (fragment, text)
        assert fragment.replace("&", "&amp;") in html or fragment in html, (fragment, html)


def test_html_is_escaped_text_is_not(renderer: MailRenderer) -> None:
    text, html = bodies(parse(render_case(renderer, "staff-answer", "de").raw))
    assert "Bitte testen Sie <kurz> & geben" in text
    assert "Bitte testen Sie &lt;kurz&gt; &amp; geben" in html
    assert "<kurz>" not in html
    assert "der Drucker läuft wieder.<br>" in html


def test_languages_differ(renderer: MailRenderer) -> None:
    de = parse(render_case(renderer, "ack", "de").raw)
    en = parse(render_case(renderer, "ack", "en").raw)
    assert str(de["Subject"]).startswith("Ihre Anfrage ist eingegangen: ")
    assert str(en["Subject"]).startswith("We have received your request: ")
    assert "Priorität" in bodies(de)[0] and "Priority" in bodies(en)[0]


@pytest.mark.parametrize("reason", ["no-subject", "unknown-sender", "template-not-available",
                                    "too-large"])
@pytest.mark.parametrize("language", ["de", "en"])
def test_each_reject_reason_has_its_own_text(renderer: MailRenderer, reason: str,
                                             language: str) -> None:
    context = {"customer_name": "Jürgen Müller", "reason": reason,
               "original_subject": "Bitte um Hilfe", "template_name": "Bedarfsanforderung",
               "max_size": 25 * 1024 * 1024}
    parts = renderer.render_parts("reject", language, context)
    marker = {
        ("no-subject", "de"): "keinen Betreff", ("no-subject", "en"): "no subject",
        ("unknown-sender", "de"): "keinem Kundenkonto",
        ("unknown-sender", "en"): "does not belong to any customer account",
        ("template-not-available", "de"): f"{BASE_URL}/templates",
        ("template-not-available", "en"): f"{BASE_URL}/templates",
        ("too-large", "de"): "25 MB", ("too-large", "en"): "25 MB",
    }[(reason, language)]
    assert marker in parts.text and marker in parts.html
    assert "Bitte um Hilfe" in parts.text
    assert "[Ticket#" not in parts.subject


def test_ack_without_answers_or_missing(renderer: MailRenderer) -> None:
    context = {**CASES["ack"]["context"], "answers": [], "missing": []}
    parts = renderer.render_parts("ack", "de", context, ticket_number=NUMBER)
    assert "Ihre Angaben" not in parts.text and "fehlen uns" not in parts.text
    assert f"{BASE_URL}/tickets/{NUMBER}" in parts.text


@pytest.mark.parametrize(("language", "label"), [("de", "Vorlage"), ("en", "Template")])
def test_ack_without_template_has_no_template_line(renderer: MailRenderer, language: str,
                                                   label: str) -> None:
    """A mail from an unknown sender to the general address has no template: no empty line."""
    context = {**CASES["ack"]["context"], "template_name": ""}
    parts = renderer.render_parts("ack", language, context, ticket_number=NUMBER)
    assert f"{label}:" not in parts.text and f">{label}<" not in parts.html
    with_template = renderer.render_parts("ack", language, CASES["ack"]["context"],
                                          ticket_number=NUMBER)
    assert f"{label}:" in with_template.text and f">{label}<" in with_template.html


def test_faq_without_articles(renderer: MailRenderer) -> None:
    context = {"customer_name": "", "question": "Kaffeemaschine", "articles": []}
    parts = renderer.render_parts("faq-answer", "en", context)
    assert "no matching article" in parts.text
    assert parts.text.startswith("Hello,\n")


MB = 1024 * 1024


@pytest.mark.parametrize("language, expected", [
    ("de", ["Ihre E-Mail war 31,5 MB groß; per E-Mail nehmen wir höchstens 20 MB an.",
            f"Den Text haben wir in Ticket {NUMBER} übernommen, die Anhänge aber nicht.",
            "Diese Anhänge fehlen deshalb:\n- Bericht Q3.pdf, 12,1 MB\n"
            "- Datei ohne Namen (image/png), 48 KB\n- a.txt, 12 Bytes\n",
            "Bitte laden Sie sie über diesen Link hoch:"]),
    ("en", ["Your email was 31.5 MB; we accept at most 20 MB by email.",
            f"We have added its text to ticket {NUMBER}, but not its attachments.",
            "These attachments are missing:\n- Bericht Q3.pdf, 12.1 MB\n"
            "- file without a name (image/png), 48 KB\n- a.txt, 12 bytes\n",
            "Please upload them using this link:"]),
])
def test_the_file_link_lists_the_left_out_attachments(renderer: MailRenderer, language: str,
                                                      expected: list[str]) -> None:
    files = [ScannedFile("Bericht Q3.pdf", "application/pdf", int(12.1 * MB)),
             ScannedFile("", "image/png", 48 * 1024 + 100), ScannedFile("a.txt", "text/plain", 12)]
    context = {**CASES["file-link"]["context"], "too_large": int(31.5 * MB), "left_out": files,
               "max_size": 20 * MB}
    parts = renderer.render_parts("file-link", language, context, ticket_number=NUMBER)
    for text in expected:
        assert text in parts.text
    assert "Bericht Q3.pdf, " in parts.html and parts.html.count("<li>") == 3
    one = renderer.render_parts("file-link", language, {**context, "left_out": files[:1]},
                                ticket_number=NUMBER)
    assert ("Dieser Anhang fehlt deshalb:" if language == "de" else
            "This attachment is missing:") in one.text
    plain = renderer.render_parts("file-link", language, CASES["file-link"]["context"],
                                  ticket_number=NUMBER)
    assert "Anhänge" not in plain.text and "attachments" not in plain.text


@pytest.mark.parametrize("language, says, label", [
    ("de", "Auf Deutsch haben wir keinen passenden Artikel gefunden.", "(Englisch)"),
    ("en", "We found no matching article in English.", "(German)"),
])
def test_faq_answer_in_another_language_says_so(renderer: MailRenderer, language: str,
                                                says: str, label: str) -> None:
    other = {"de": "en", "en": "de"}[language]
    article = FaqArticle("VPN", "Extract", f"{BASE_URL}/faq/vpn", other)
    context = {"customer_name": "", "question": "VPN", "articles": [article],
               "other_language": True}
    parts = renderer.render_parts("faq-answer", language, context)
    assert says in parts.text and says in parts.html
    assert f"1. VPN {label}" in parts.text
    assert f'<a href="{BASE_URL}/faq/vpn" lang="{other}">VPN</a> {label}' in parts.html
    same = renderer.render_parts("faq-answer", language, {**context, "other_language": False})
    assert says not in same.text and label not in same.text


@pytest.mark.parametrize(("language", "phrase"), [("de", "nicht gelöst"),
                                                  ("en", "not solved")])
def test_faq_answers_say_how_to_get_a_ticket(renderer: MailRenderer, language: str,
                                             phrase: str) -> None:
    parts = renderer.render_parts("faq-answer", language, CASES["faq-answer"]["context"])
    assert f'"{phrase}" in the first line' in parts.text or f'"{phrase}" in die erste' in (
        parts.text)
    assert f"<strong>{phrase}</strong>" in parts.html


def test_ack_suggests_faq_articles_only_when_given(renderer: MailRenderer) -> None:
    plain = renderer.render_parts("ack", "de", CASES["ack"]["context"], ticket_number=NUMBER)
    assert "FAQ" not in plain.text and "FAQ" not in plain.html
    context = {**CASES["ack"]["context"], "faq": [
        FaqArticle("Der Drucker druckt nur leere Seiten", "Kommen nur leere Seiten <aus>",
                   f"{BASE_URL}/faq/drucker-leere-seiten")]}
    for language, heading in (("de", "Artikel aus unseren FAQ"), ("en", "articles from our FAQ")):
        parts = renderer.render_parts("ack", language, context, ticket_number=NUMBER)
        assert heading in parts.text and heading in parts.html
        assert f"{BASE_URL}/faq/drucker-leere-seiten" in parts.text
        assert f'href="{BASE_URL}/faq/drucker-leere-seiten"' in parts.html
        assert "leere Seiten &lt;aus&gt;" in parts.html


@pytest.mark.parametrize(("text", "html"), [
    ("Zeile 1\nZeile <2> & 3", "Zeile 1<br>\nZeile &lt;2&gt; &amp; 3"),
    ("a\r\nb\rc\n\nd\n", "a<br>\nb<br>\nc<br>\n<br>\nd"),
    ("<script>alert(1)</script>\u2028x", "&lt;script&gt;alert(1)&lt;/script&gt;<br>\nx"),
    ("", ""),
])
def test_nl2br_escapes_the_text_and_keeps_its_line_breaks(text: str, html: str) -> None:
    assert render._nl2br(text) == html


# -- header injection and non-ASCII ------------------------------------------------------

@pytest.mark.parametrize("separator", ["\r\n", "\n", "\r", "\u2028", "\r\n\t", "\x00"])
def test_header_injection_cannot_add_headers(renderer: MailRenderer, separator: str) -> None:
    evil = f"Drucker{separator}Bcc: victim@x.example"
    context = {**CASES["ack"]["context"], "title": evil, "customer_name": evil}
    mail = renderer.render("ack", "de", context, sender=MailIdentity(evil, QUEUE.address),
                           to=[(evil, "juergen.mueller@kunde.example.org")],
                           ticket_number=NUMBER, in_reply_to="<a@b>\r\nBcc: victim@x.example",
                           references=["<c@d>\nBcc: victim@x.example"], now=NOW)
    message = parse(mail.raw)
    assert "Bcc" not in message
    assert mail.recipients == ("juergen.mueller@kunde.example.org",)
    headers = mail.raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    assert not re.search(r"^Bcc:", headers, re.MULTILINE | re.IGNORECASE)
    assert str(message["Subject"]) == (
        f"Ihre Anfrage ist eingegangen: Drucker Bcc: victim@x.example [Ticket#{NUMBER}]")
    assert message["To"].addresses[0].display_name == "Drucker Bcc: victim@x.example"
    assert message["From"].addresses[0].display_name == "Drucker Bcc: victim@x.example"
    assert message["From"].addresses[0].addr_spec == QUEUE.address
    assert "In-Reply-To" not in message                      # malformed ids are left out
    assert "References" not in message


@pytest.mark.parametrize("address", ["victim@x.example\r\nBcc: a@b.example", "a b@x.example",
                                     "<a@x.example>", "no-at-sign", "a@", "a@-x.example",
                                     "jürgen@kunde.example"])
def test_unsafe_addresses_are_refused(renderer: MailRenderer, address: str) -> None:
    with pytest.raises(HeaderError):
        renderer.render("follow-up", "de", CASES["follow-up"]["context"], sender=QUEUE,
                        to=[("X", address)], ticket_number=NUMBER)


def test_non_ascii_names_and_subjects_round_trip(renderer: MailRenderer) -> None:
    context = {**CASES["ack"]["context"], "title": "Störung: Drucker", "customer_name":
               "Jürgen Müller"}
    mail = renderer.render("ack", "de", context,
                           sender=MailIdentity("Service-Desk Straße & Söhne, \"IT\"",
                                               "support@support.example.com"),
                           to=[("Müller, Jürgen", "juergen@kunde.example.org")],
                           ticket_number=NUMBER, now=NOW)
    assert b"=?utf-8?" in mail.raw                              # RFC 2047 on the wire
    message = parse(mail.raw)
    assert str(message["Subject"]) == (
        f"Ihre Anfrage ist eingegangen: Störung: Drucker [Ticket#{NUMBER}]")
    assert message["From"].addresses[0].display_name == 'Service-Desk Straße & Söhne, "IT"'
    assert message["To"].addresses[0].display_name == "Müller, Jürgen"
    assert message["To"].addresses[0].addr_spec == "juergen@kunde.example.org"
    assert "Guten Tag Jürgen Müller," in bodies(message)[0]


def test_idn_domain_is_encoded(renderer: MailRenderer) -> None:
    mail = renderer.render("follow-up", "de", CASES["follow-up"]["context"], sender=QUEUE,
                           to=[("", "info@müller-it.example")], ticket_number=NUMBER)
    assert mail.recipients == ("info@" + "müller-it.example".encode("idna").decode(),)
    assert mail.recipients[0].isascii()


def test_long_subject_is_cut_and_folded(renderer: MailRenderer) -> None:
    context = {**CASES["follow-up"]["context"], "title": "Ä" + "x" * 3000}
    mail = renderer.render("follow-up", "de", context, sender=QUEUE, to=[CUSTOMER],
                           ticket_number=NUMBER)
    assert max(len(line) for line in mail.raw.split(b"\r\n")) <= 78
    subject = str(parse(mail.raw)["Subject"])
    assert subject.endswith(f"… [Ticket#{NUMBER}]") and len(subject) < 260


# -- subject tag, threading, Auto-Submitted ----------------------------------------------

def test_existing_tags_are_not_duplicated(renderer: MailRenderer) -> None:
    title = f"AW: [Ticket#{NUMBER}] Drucker [ticket # 2026010110000001]"
    context = {**CASES["status"]["context"], "title": title}
    parts = renderer.render_parts("status", "en", context, ticket_number=NUMBER)
    assert parts.subject == f"Your ticket has been closed: AW: Drucker [Ticket#{NUMBER}]"


def test_staff_answer_subject_has_one_reply_prefix(renderer: MailRenderer) -> None:
    context = {**CASES["staff-answer"]["context"], "title": "AW: Re: Drucker"}
    parts = renderer.render_parts("staff-answer", "de", context, ticket_number=NUMBER)
    assert parts.subject == f"Re: Drucker [Ticket#{NUMBER}]"


def test_references_are_deduplicated_and_bounded(renderer: MailRenderer) -> None:
    thread = [f"<m{i}@kunde.example.org>" for i in range(40)]
    mail = render_case(renderer, "follow-up", "en", references=[*thread, thread[3], ANSWERED],
                       in_reply_to=ANSWERED)
    references = str(parse(mail.raw)["References"]).split()
    assert len(references) == 20 == len(set(references))
    assert references[0] == thread[0]                 # the thread's root stays
    assert references[-2] == thread[-1]               # then the newest ones
    assert references[-1] == ANSWERED                 # the mail answered comes last


def test_overlong_foreign_ids_and_addresses_are_refused(renderer: MailRenderer) -> None:
    huge = "<" + "x" * 2000 + "@kunde.example.org>"
    mail = render_case(renderer, "follow-up", "en", references=[huge, THREAD[0]],
                       in_reply_to=huge)
    message = parse(mail.raw)
    assert "In-Reply-To" not in message
    assert message["References"] == THREAD[0]
    assert max(len(line) for line in mail.raw.split(b"\r\n")) <= 998
    with pytest.raises(HeaderError):
        render_case(renderer, "follow-up", "en", to=[("X", "a" * 250 + "@kunde.example.org")])


def test_bare_message_ids_get_brackets(renderer: MailRenderer) -> None:
    mail = render_case(renderer, "follow-up", "en", references=["a.b@c.example"],
                       in_reply_to="x.y@c.example")
    message = parse(mail.raw)
    assert message["In-Reply-To"] == "<x.y@c.example>"
    assert message["References"] == "<a.b@c.example> <x.y@c.example>"


def test_auto_submitted_defaults_and_override(renderer: MailRenderer) -> None:
    not_a_reply = render_case(renderer, "ack", "de", in_reply_to=None, references=())
    assert parse(not_a_reply.raw)["Auto-Submitted"] == "auto-generated"
    assert "In-Reply-To" not in parse(not_a_reply.raw)
    forced = render_case(renderer, "status", "de", auto_submitted="auto-replied")
    assert parse(forced.raw)["Auto-Submitted"] == "auto-replied"
    omitted = render_case(renderer, "status", "de", auto_submitted="no")
    assert "Auto-Submitted" not in parse(omitted.raw)


def test_message_ids_are_unique(renderer: MailRenderer) -> None:
    ids = {render_case(renderer, "follow-up", "de").message_id for _ in range(50)}
    assert len(ids) == 50


# -- context checks ----------------------------------------------------------------------

def test_missing_context_key_is_named(renderer: MailRenderer) -> None:
    context = dict(CASES["ack"]["context"])
    del context["missing"]
    with pytest.raises(RenderError, match=r"ack: context is missing 'missing'"):
        renderer.render_parts("ack", "de", context, ticket_number=NUMBER)


def test_ticket_events_need_a_number(renderer: MailRenderer) -> None:
    with pytest.raises(RenderError, match="ticket_number is required"):
        renderer.render_parts("status", "de", CASES["status"]["context"])
    with pytest.raises(RenderError, match="is not a number"):
        renderer.render_parts("status", "de", CASES["status"]["context"],
                              ticket_number="1/../../admin")


@pytest.mark.parametrize(("event", "key", "value"), [
    ("reject", "reason", "spam"), ("status", "new_state", "done"),
    ("staff-notify", "kind", "edit"), ("ack", "priority", 9),
])
def test_values_with_fixed_choices_are_checked(renderer: MailRenderer, event: str, key: str,
                                               value: Any) -> None:
    context = {**CASES[event]["context"], key: value}
    with pytest.raises(RenderError, match=key):
        renderer.render_parts(event, "de", context, ticket_number=NUMBER)


def test_unknown_event_and_reserved_keys(renderer: MailRenderer) -> None:
    with pytest.raises(RenderError, match="unknown mail event"):
        renderer.render_parts("birthday", "de", {})
    context = {**CASES["follow-up"]["context"], "ticket_url": "https://evil.example/"}
    with pytest.raises(RenderError, match="ticket_url"):
        renderer.render_parts("follow-up", "de", context, ticket_number=NUMBER)


# -- templates: overrides, fallback, strictness ------------------------------------------

def test_override_directory_wins(tmp_path: Path) -> None:
    (tmp_path / "follow-up.de.subject.j2").write_text("Danke, {{ customer_name }}!\n")
    (tmp_path / "_closing.de.txt.j2").write_text("Ihre IT der Muster GmbH\n")
    renderer = MailRenderer(base_url=BASE_URL, override_dir=tmp_path)
    parts = renderer.render_parts("follow-up", "de", CASES["follow-up"]["context"],
                                  ticket_number=NUMBER)
    assert parts.subject == f"Danke, Jürgen Müller! [Ticket#{NUMBER}]"
    assert parts.text.rstrip().endswith("Ihre IT der Muster GmbH")   # partials too
    assert "vielen Dank für Ihre weitere Nachricht" in parts.text     # the rest is ours


def test_override_with_undefined_variable_fails_loudly(tmp_path: Path) -> None:
    (tmp_path / "follow-up.de.txt.j2").write_text("Hallo {{ kunde }}\n")
    renderer = MailRenderer(base_url=BASE_URL, override_dir=tmp_path)
    with pytest.raises(RenderError, match=r"follow-up\.de\.txt\.j2.*'kunde' is undefined"):
        renderer.render_parts("follow-up", "de", CASES["follow-up"]["context"],
                              ticket_number=NUMBER)


def test_override_with_syntax_error_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "follow-up.de.txt.j2").write_text("Hallo {% if %}\n")
    renderer = MailRenderer(base_url=BASE_URL, override_dir=tmp_path)
    with pytest.raises(RenderError, match=r"follow-up\.de\.txt\.j2 line 1"):
        renderer.render_parts("follow-up", "de", CASES["follow-up"]["context"],
                              ticket_number=NUMBER)


def test_missing_language_falls_back_to_english(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    for path in default_templates_dir().glob("*.j2"):
        if ".de." not in path.name:
            (tmp_path / path.name).write_text(path.read_text("utf-8"), "utf-8")
    renderer = MailRenderer(base_url=BASE_URL, templates_dir=tmp_path)
    parts = renderer.render_parts("follow-up", "de", CASES["follow-up"]["context"],
                                  ticket_number=NUMBER)
    assert parts.language == "en" and parts.subject.startswith("We have received")
    (tmp_path / "follow-up.en.html.j2").unlink()
    monkeypatch.setattr(render, "RECHECK_SECONDS", 0.0)    # look at the files again now
    with pytest.raises(RenderError, match=r"follow-up\.en\.html\.j2"):
        renderer.render_parts("follow-up", "de", CASES["follow-up"]["context"],
                              ticket_number=NUMBER)


@pytest.mark.parametrize(("name", "part"), [
    ("follow-up.en.subject.j2", "subject"),
    ("_greeting.en.txt.j2", "text"),            # included by follow-up.en.txt.j2
])
def test_an_edited_template_is_used_after_the_recheck_interval(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, part: str) -> None:
    """Templates, the event's own and those they include, are looked up and checked once
    per `RECHECK_SECONDS`, not per mail; an admin's edit is picked up once that has
    passed, without a restart."""
    overrides = tmp_path / "overrides"
    overrides.mkdir()
    template = overrides / name
    template.write_text("First wording", "utf-8")
    renderer = MailRenderer(base_url=BASE_URL, override_dir=overrides)

    def rendered() -> str:
        parts = renderer.render_parts("follow-up", "en", CASES["follow-up"]["context"],
                                      ticket_number=NUMBER)
        return str(getattr(parts, part))
    assert rendered().startswith("First wording")
    template.write_text("Second wording", "utf-8")
    os.utime(template, (time.time() + 5, time.time() + 5))   # a visibly newer file
    assert rendered().startswith("First wording")
    clock = time.monotonic() + render.RECHECK_SECONDS + 0.1
    monkeypatch.setattr(render, "time", SimpleNamespace(monotonic=lambda: clock))
    assert rendered().startswith("Second wording")


def test_shipped_templates_are_complete() -> None:
    names = {p.name for p in default_templates_dir().glob("*.j2")}
    for event in EVENTS:
        for language in ("de", "en"):
            for part in ("subject", "txt", "html"):
                assert f"{event}.{language}.{part}.j2" in names
    assert all(name.startswith("_") or name.split(".")[0] in EVENTS for name in names)


def test_every_template_uses_only_known_variables() -> None:
    """Static check: each template's free variables are in the context its event gets."""
    renderer = MailRenderer(base_url=BASE_URL)
    from jinja2 import meta

    common = {"event", "language", "base_url", "ticket_number", "ticket_url", "login_url",
              "sender_name", "confirm_url", "file_url", "max_size", "template_name",
              "m"}   # `{% import "_macros.html.j2" as m %}`, seen from inside blocks
    for path in sorted(default_templates_dir().glob("*.j2")):
        source = path.read_text("utf-8")
        free = meta.find_undeclared_variables(renderer.env.parse(source))
        event = path.name.split(".")[0]
        if event.startswith("_"):
            assert free <= common | {"customer_name"}, (path.name, free)
        else:
            allowed = set(REQUIRED_CONTEXT[event]) | set(OPTIONAL_CONTEXT.get(event, {}))
            assert free <= common | allowed, (path.name, free)


def test_missing_shipped_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="mail templates not found"):
        MailRenderer(base_url=BASE_URL, templates_dir=tmp_path / "nope")


def test_datetime_uses_the_renderers_zone() -> None:
    from zoneinfo import ZoneInfo

    renderer = MailRenderer(base_url=BASE_URL, timezone=ZoneInfo("Europe/Berlin"))
    parts = renderer.render_parts("password-token", "de", CASES["password-token"]["context"])
    assert "28.11.2026, 15:30 Uhr (CET)" in parts.text


@pytest.mark.parametrize("language, path, says", [
    ("de", "staff-token", "kein DMARC- oder DKIM-Pass"),
    ("en", "staff-token", "no DMARC or DKIM pass"),
    ("de", "reply-token", "an die Antwortadresse des Kunden"),
    ("en", "reply-token", "to the customer's reply address"),
    ("de", "subject-tag", "Ticketnummer im Betreff"),
    ("en", "subject-tag", "ticket number in its subject"),
    ("de", "in-reply-to", "In-Reply-To/References"),
    ("en", "references", "In-Reply-To/References"),
])
def test_kept_as_note_says_why(renderer: MailRenderer, language: str, path: str,
                               says: str) -> None:
    detail = "mx.example.com: dmarc=fail for example.com" if path == "staff-token" else ""
    parts = renderer.render_parts("kept-as-note", language, {
        "agent_name": "Anna", "title": "Drucker", "path": path, "detail": detail},
        ticket_number=NUMBER)
    assert says in parts.text and says in parts.html
    assert detail in parts.text


def test_kept_as_note_refuses_an_unknown_path(renderer: MailRenderer) -> None:
    with pytest.raises(RenderError, match="path 'web'"):
        renderer.render_parts("kept-as-note", "de", {"agent_name": "A", "title": "T",
                                                     "path": "web", "detail": ""},
                              ticket_number=NUMBER)


@pytest.mark.parametrize("language, warning", [("de", "Absender nicht bestätigt"),
                                               ("en", "sender not verified")])
def test_a_notice_about_an_unverified_sender_says_why(renderer: MailRenderer, language: str,
                                                      warning: str) -> None:
    context = {**CASES["staff-notify"]["context"],
               "unverified": "mx.example.com: dmarc=fail for kunde.example.org",
               "claimed_ticket": "2026112710000003"}
    parts = renderer.render_parts("staff-notify", language, context, ticket_number=NUMBER)
    assert parts.subject.startswith("[nicht bestätigt]" if language == "de" else "[unverified]")
    for text in (parts.text, parts.html):
        assert warning in text and "dmarc=fail for kunde.example.org" in text
        assert "2026112710000003" in text
    plain = renderer.render_parts("staff-notify", language, CASES["staff-notify"]["context"],
                                  ticket_number=NUMBER)
    assert warning not in plain.text and "[" not in plain.subject.split("[Ticket#")[0]


def test_staff_notice_shows_the_due_times(renderer: MailRenderer) -> None:
    context = {**CASES["staff-notify"]["context"], "first_response_due": NOW,
               "solution_due": EXPIRES}
    for language, wanted in (("de", ["Erste Antwort fällig", "27.11.2026, 14:30 Uhr",
                                     "Lösung fällig", "28.11.2026, 14:30 Uhr"]),
                             ("en", ["First response due", "2026-11-27 14:30",
                                     "Solution due", "2026-11-28 14:30"])):
        mail = renderer.render("staff-notify", language, context, sender=QUEUE, to=[STAFF],
                               ticket_number=NUMBER)
        text, html = bodies(parse(mail.raw))
        for fragment in wanted:
            assert fragment in text and fragment in html, (language, fragment)
    plain, _ = bodies(parse(render_case(renderer, "staff-notify", "en").raw))
    assert "due" not in plain          # a ticket without targets shows none


def test_one_renderer_keeps_every_mail_to_its_own_values(renderer: MailRenderer) -> None:
    """What is remembered between mails (templates, split addresses, mailbox headers) never
    carries one mail's customer, language, ticket or queue into the next."""
    mails = {}
    for language, name, address, number, queue in (
            ("de", "Jürgen Müller", "juergen@kunde.example.org", "2026112710000017", QUEUE),
            ("en", "Eve Example", "eve@other.example", "2026112710000018",
             MailIdentity("Billing", "billing@support.example.com")),
            ("de", "Jürgen Müller", "juergen@kunde.example.org", "2026112710000019", QUEUE)):
        context = {**CASES["ack"]["context"], "customer_name": name, "title": f"T{number}"}
        mail = renderer.render("ack", language, context, sender=queue, to=[(name, address)],
                               ticket_number=number, now=NOW)
        message = parse(mail.raw)
        text, html = bodies(message)
        assert message["To"].addresses[0].display_name == name
        assert message["To"].addresses[0].addr_spec == address == mail.recipients[0]
        assert message["From"].addresses[0].addr_spec == queue.address == mail.envelope_from
        assert message["From"].addresses[0].display_name == queue.name
        assert f"[Ticket#{number}]" in str(message["Subject"])
        greeting = "Guten Tag" if language == "de" else "Hello"
        for body in (text, html):
            assert f"{greeting} {name}," in body and f"T{number}" in body
            assert f"{BASE_URL}/tickets/{number}" in body
        mails[number] = mail
    assert len({m.message_id for m in mails.values()}) == 3
    raws = [m.raw for m in mails.values()]
    assert b"eve@other.example" not in raws[0] + raws[2]
    assert b"juergen@kunde.example.org" not in raws[1]


def test_a_new_renderer_does_not_reuse_another_ones_parts(tmp_path: Path) -> None:
    """A reloaded configuration builds a new renderer: its base URL and its override
    templates count from its first mail on, whatever the old one had rendered."""
    old = MailRenderer(base_url=BASE_URL)
    before = parse(render_case(old, "follow-up", "de").raw)
    (tmp_path / "follow-up.de.subject.j2").write_text("Neu: {{ title }}\n")
    new = MailRenderer(base_url="https://helpdesk.example.net", override_dir=tmp_path)
    after = parse(render_case(new, "follow-up", "de").raw)
    assert f"{BASE_URL}/tickets/{NUMBER}" in bodies(before)[0]
    assert f"https://helpdesk.example.net/tickets/{NUMBER}" in bodies(after)[0]
    assert BASE_URL not in bodies(after)[0] + bodies(after)[1]
    assert str(after["Subject"]).startswith("Neu: Störung")
    assert not str(before["Subject"]).startswith("Neu:")
    assert str(parse(render_case(old, "follow-up", "de").raw)["Subject"]) == str(
        before["Subject"])
