"""Every portal page in German and in English over HTTP (issue #17 item 8): no word of the
other language leaks into a page, numbers, sizes, dates and plurals are written the way each
language writes them, and every text has both languages.

What a page says is read as a person (or a screen reader) meets it: the visible text and
the `title`, `aria-label`, `placeholder` and `alt` attributes. Parts marked with another
`lang` (the switch's "English" on a German page, an English FAQ article) are left out, as
they are meant to be in their own language; so are the texts of a ticket's articles, which
are what the customer and the desk wrote. The FAQ's "all languages" view is left out on
purpose: it lists the categories of both languages.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from gateway.app import App
from gateway.store.models import CustomerUser, table_of
from gateway.tickets import tokens
from gateway.web import i18n
from gateway.web.formats import format_size, format_time
from tests.integration.faq.test_faq import load_demo_faq
from tests.web.conftest import log_in, new_browser, post_form, set_password
from tests.web.test_files import new_area, upload
from tests.web.test_tickets import ticket_by_mail

_customer = table_of(CustomerUser)
TEMPLATES = Path(__file__).parents[2] / "gateway" / "web" / "templates"

# words a reader would notice at once in a page of the other language (case-sensitive)
ENGLISH_WORDS = ("the", "and", "of", "your", "Your", "required", "article", "articles",
                 "Status:", "ticket", "tickets", "file", "files", "Log in", "Log out",
                 "Password", "Search", "Subject", "Created", "Priority", "Attachments",
                 "Reply", "Send", "Size", "Uploaded", "Previous", "Next", "open", "closed",
                 "new", "min", "days", "Page", "Error", "Save", "Confirm", "helpful",
                 "email", "Language", "Skip", "found")
GERMAN_WORDS = ("der", "die", "das", "und", "Sie", "Ihr", "Ihre", "Pflichtfeld",
                "Pflichtfelder", "Beitrag", "Beiträge", "Datei", "Dateien", "Anmelden",
                "Abmelden", "Passwort", "Suche", "Betreff", "Erstellt", "Priorität", "Anlagen",
                "Antworten", "Absenden", "Größe", "Hochgeladen", "Zurück", "Weiter", "offen",
                "geschlossen", "neu", "Tage", "Std.", "Seite", "Fehler", "Sprache",
                "Speichern", "Bestätigen", "E-Mail", "für", "mit", "von", "nicht", "fand",
                "fanden", "hilfreich")
TELLTALE = {"de": ENGLISH_WORDS, "en": GERMAN_WORDS}


class _Reader(HTMLParser):
    """The text of a page as it is read, without parts in another `lang`."""

    SKIP = frozenset({"style", "script", "head"})
    CONTENT = frozenset({"text-body", "html-body"})         # what people wrote
    VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link",
                      "meta", "source", "track", "wbr"})
    READ_ATTRIBUTES = ("title", "aria-label", "placeholder", "alt")

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []      # (tag, hidden: another language)
        self.parts: list[str] = []

    def hidden(self) -> bool:
        return any(hidden for _, hidden in self.stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        other = (tag != "html" and values.get("lang") is not None) or bool(
            self.CONTENT & set(str(values.get("class") or "").split()))
        if not (self.hidden() or other):
            self.parts.extend(str(values[a]) for a in self.READ_ATTRIBUTES if values.get(a))
        if tag not in self.VOID:
            self.stack.append((tag, other or tag in self.SKIP))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        if not self.hidden():
            self.parts.append(data)


def read(html: str) -> str:
    reader = _Reader()
    reader.feed(html)
    return " ".join(" ".join(reader.parts).split())


def leaks(text: str, language: str) -> list[str]:
    """Words and texts of the other language in `text`."""
    found = [w for w in TELLTALE[language]
             if re.search(rf"(?<![\w/-]){re.escape(w)}(?![\w/-])", text)]
    other = 1 if language == "de" else 0
    for key, pair in i18n.all_texts().items():
        if pair[0] == pair[1]:
            continue
        for piece in re.split(r"\{[^}]*\}", pair[other]):
            piece = piece.strip(" .,:;()\"„“")
            if len(piece) >= 8 and piece not in pair[1 - other] and piece in text:
                found.append(f"{key}: {piece!r}")
    return found


@pytest.fixture
def pages(app: App, customers: None, web: FastAPI) -> Iterator[Any]:
    """A function giving every page of the portal in one language, as (name, status, html)."""
    load_demo_faq(app)
    set_password(app, "mmuster")
    first = ticket_by_mail(app, "HP LaserJet 4000 E42", body="E42 0x1F\n",
                           attachment=b"E42" * 700)
    ticket_by_mail(app, "HP LaserJet 4000 E43", body="E43 0x2F\n")
    token = new_area(app, first)
    upload(new_browser(web), token, ("E42.log", b"x" * 1500, "text/plain"))

    def every_page(language: str) -> list[tuple[str, int, str]]:
        with app.db.write() as session:
            session.execute(update(_customer).where(_customer.c.username == "mmuster")
                            .values(language=language))
            user_id = session.execute(select(_customer.c.id).where(
                _customer.c.username == "mmuster")).scalar_one()
            confirm = tokens.issue(session, user_id, tokens.PASSWORD_LOST, minutes=30).token
        accept = {"Accept-Language": language}
        anonymous = new_browser(web)
        anonymous.headers.update(accept)
        found: list[tuple[str, int, str]] = []

        def get(client: TestClient, url: str, name: str | None = None) -> str:
            response = client.get(url)
            found.append((name or url, response.status_code, response.text))
            return response.text

        def post(client: TestClient, page: str, url: str, data: dict[str, str],
                 name: str) -> None:
            response = post_form(client, page, url, data)
            found.append((name, response.status_code, response.text))

        for url in ("/login", "/password/lost", "/password/confirm?token=wrong",
                    f"/password/confirm?token={confirm}", "/faq", "/faq?q=VPN",
                    "/faq/passwort-vergessen", f"/files/{token}",
                    "/files/wrong-token", "/nowhere", "/tickets?page=x"):
            get(anonymous, url)
        post(anonymous, "/login", "/login", {"username": "mmuster", "password": "wrong"},
             "login failed")
        post(anonymous, "/password/lost", "/password/lost", {"username": "nobody"},
             "password lost: sent")
        user = new_browser(web)
        user.headers.update(accept)
        log_in(user, "mmuster")
        for url in ("/tickets", "/tickets?filter=closed", f"/tickets/{first}", "/templates",
                    "/templates/incident", "/password/change", "/logout", "/faq",
                    "/faq/passwort-vergessen?voted=1"):
            get(user, url, f"{url} (logged in)")
        post(user, "/templates/incident", "/templates/incident", {"subject": ""},
             "template form: missing fields")
        post(user, f"/tickets/{first}", f"/tickets/{first}/reply", {"text": ""},
             "reply: empty")
        post(user, "/password/change", "/password/change",
             {"current_password": "x", "new_password": "y", "repeat_password": "z"},
             "password change: too short")
        post(user, f"/tickets/{first}", f"/tickets/{first}/files", {}, "file link created")
        return found

    yield every_page


@pytest.mark.parametrize("language", ["de", "en"])
def test_no_page_speaks_the_other_language(pages: Any, language: str) -> None:
    seen = pages(language)
    assert len(seen) == 26
    problems = {}
    for name, status, html in seen:
        assert status < 500, name
        assert f'<html lang="{language}">' in html, name
        found = leaks(read(html), language)
        if found:
            problems[name] = found
    assert problems == {}


def test_numbers_dates_and_plurals_in_each_language(pages: Any) -> None:
    german = {name: read(html) for name, _, html in pages("de")}
    english = {name: read(html) for name, _, html in pages("en")}
    date_de = r"\d\d\.\d\d\.\d{4} \d\d:\d\d"
    date_en = r"\d{1,2} [A-Z][a-z]{2} \d{4}, \d\d:\d\d"
    ticket = next(name for name in german if name.startswith("/tickets/"))
    for pages_of, date in ((german, date_de), (english, date_en)):
        assert re.search(date, pages_of[ticket]), pages_of[ticket]
        assert not re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", pages_of[ticket])
    assert "(2 Tickets)" in german["/tickets (logged in)"]
    assert "(2 tickets)" in english["/tickets (logged in)"]
    assert "(2 KB)" in german[ticket] and "(2 KB)" in english[ticket]
    area = next(name for name in german if name.startswith("/files/") and "wrong" not in name)
    assert "E42.log 1 KB" in german[area] and "E42.log 1 KB" in english[area]
    assert "Höchstens 1,0 GB je Datei, 20 Dateien und 2,0 GB zusammen" in german[area]
    assert "At most 1.0 GB per file, 20 files and 2.0 GB altogether" in english[area]
    assert "Pflichtfeld" in next(html for name, _, html in pages("de")
                                 if name == "/templates/incident (logged in)")


def test_sizes_counts_and_times_are_written_per_language() -> None:
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    assert format_size(2**30, "de") == "1,0 GB" and format_size(2**30, "en") == "1.0 GB"
    assert format_size(1536 * 2**30, "de") == "1.536,0 GB"
    assert format_size(1500, "de") == "1 KB" and format_size(1000, "en") == "1,000 B"
    assert format_size(5 * 2**20, "de") == "5 MB"
    moment = datetime(2026, 12, 6, 21, 10, tzinfo=UTC)
    berlin = ZoneInfo("Europe/Berlin")
    assert format_time(moment, "de", berlin) == "06.12.2026 22:10"
    assert format_time(moment, "en", berlin) == "6 Dec 2026, 22:10"
    assert i18n.text_n("de", "faq_count", 1) == "1 Artikel"
    assert i18n.text_n("en", "faq_count", 1) == "1 article"
    assert i18n.text_n("en", "faq_count", 2) == "2 articles"
    assert i18n.text_n("de", "files_uploaded", 1).startswith("1 Datei hochgeladen. Sie ist")
    assert i18n.text_n("de", "files_uploaded", 2).startswith("2 Dateien hochgeladen. Sie sind")
    assert i18n.text_n("de", "faq_votes_yes", 1) == "1 fand ihn hilfreich"
    assert i18n.text_n("de", "page_of", 1234, page=1, pages=2) == \
        "Seite 1 von 2 (1.234 Tickets)"
    assert i18n.text_n("en", "age_days", 1) == "1 day"


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_every_text_has_both_languages_with_the_same_placeholders() -> None:
    for key, (german, english) in i18n.all_texts().items():
        assert german.strip() and english.strip(), key
        assert _placeholders(german) == _placeholders(english), key


def test_every_text_a_page_asks_for_exists() -> None:
    known = set(i18n.all_keys())
    plural = {key.split("[")[0] for key in i18n.all_texts()} - known
    for page in TEMPLATES.glob("*.html"):
        source = page.read_text(encoding="utf-8")
        for key in re.findall(r"""\bt\(\s*["']([\w-]+)["']\s*[,)]""", source):
            assert key in known, f"{page.name}: {key}"
        for key in re.findall(r"""\btn\(\s*["']([\w-]+)["']""", source):
            assert key in plural, f"{page.name}: {key}"
