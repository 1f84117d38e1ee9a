"""The portal on a phone and the language switch, in a real browser (issue #17 items 5
and 6): Debian's Chromium driven by Playwright for Python against a real `ticketgw serve`
whose outbound mail goes to a Maildir.

- Phone: at 360 and 390 px wide, no page scrolls sideways (`scrollWidth <= innerWidth`),
  not even a ticket whose mail holds a long unbroken word and URL; on My tickets the Status
  and Age cells are inside the screen.
- Language: "English" in the header turns the page English; after logging out and in
  again, and in a fresh browser that asks for German, the customer still gets English, and
  the acknowledgment of their next ticket is English.

Both run with JavaScript turned off in the browser (the measuring is Playwright's own,
not the page's): the portal sends no script at all, and everything here is plain HTML.

Chromium must be at /usr/bin/chromium; when it is not, these tests FAIL, they never skip.
Screenshots go to the test's directory, and to $TGW_SCREENSHOTS_DIR when set
(portal-12-phone-my-tickets, portal-13-phone-ticket, portal-14-phone-menu,
portal-15-language-switch).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, update

from gateway.store.models import CustomerUser, table_of
from gateway.web.passwords import hash_password
from tests.maildir import Maildir
from tests.web.browser import german_page
from tests.web.test_files_browser import ticketgw
from tests.web.test_portal_browser import server, text_of  # noqa: F401  (server: the fixture)

PASSWORD = "Mein Passwort fürs Handy 7"
DEMO_FAQ = Path(__file__).parents[2] / "gateway" / "cli" / "demo" / "faq"
LONG_WORD = "Druckerwarteschlangenverwaltungsdienstfehlermeldung" * 3
LONG_URL = "https://intranet.acme.example/druckerverwaltung/" + "warteschlange-" * 12 + "E42"
PHONES = (360, 390)


def customer_with_password(database_url: str) -> None:
    """The fixture's customer `mmuster` gets a password (the password-lost journey is
    test_portal_browser's)."""
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(update(table_of(CustomerUser))
                               .where(table_of(CustomerUser).c.username == "mmuster")
                               .values(password_hash=hash_password(PASSWORD)))
    finally:
        engine.dispose()


def ticket_with_long_words(config: Path, tmp_path: Path) -> str:
    mail = tmp_path / "long.eml"
    mail.write_bytes(
        b"From: Max Mustermann <max.mustermann@acme.example>\r\n"
        b"To: incident@support.example.com\r\nSubject: Drucker meldet " + LONG_WORD[:60].encode()
        + b"\r\nMessage-ID: <long@acme.example>\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"\r\nBetroffenes System: Druckserver\r\n\r\nDie Meldung lautet " + LONG_WORD.encode()
        + b"\r\nSiehe " + LONG_URL.encode() + b"\r\n")
    ticketgw(config, "ingest", str(mail), "-r", "incident@support.example.com")
    return str(json.loads(ticketgw(config, "ticket", "list", "--json"))[0]["number"])


def fits(page: Any) -> tuple[int, int]:
    """(the page's width, the window's width). The window is a phone-sized desktop
    window rather than Playwright's `is_mobile`, whose visual viewport zooms out to a page
    that is too wide and so would hide exactly what this measures."""
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    return int(widths[0]), int(widths[1])


def log_in(page: Any, base: str, login: str = "Anmelden") -> None:
    page.goto(f"{base}/login")
    page.locator("#username").fill("mmuster")
    page.locator("#password").fill(PASSWORD)
    page.locator("main").get_by_role("button", name=login).click()


@pytest.mark.backends("sqlite")   # a layout check: the database adds nothing but time
def test_every_page_fits_a_phone(server: tuple[str, Path], database_url: str,  # noqa: F811
                                 tmp_path: Path) -> None:
    from playwright.sync_api import expect

    base, config = server
    customer_with_password(database_url)
    ticketgw(config, "faq", "import", str(DEMO_FAQ))
    number = ticket_with_long_words(config, tmp_path)
    public = ["/login", "/password/lost", "/password/confirm?token=abgelaufen", "/faq",
              "/faq?q=Drucker", "/faq/drucker-papierstau", "/files/kein-gueltiger-link",
              "/nirgends"]
    private = ["/tickets", "/tickets?filter=open", f"/tickets/{number}", "/templates",
               "/templates/incident", "/password/change", "/logout", "/faq"]

    with german_page(tmp_path, "portal", numbered=False,
                     viewport={"width": PHONES[0], "height": 780},
                     java_script_enabled=False) as (page, shot):
        too_wide: dict[str, tuple[int, int]] = {}

        def check(url: str | None = None) -> None:
            if url is not None:
                page.goto(base + url)
            width, window = fits(page)
            assert window in PHONES
            if width > window:
                too_wide[f"{page.url} at {window}px"] = (width, window)

        for phone in PHONES:
            page.set_viewport_size({"width": phone, "height": 780})
            for url in public:
                check(url)
        log_in(page, base)
        expect(page).to_have_url(f"{base}/tickets")

        # the ticket page's button: the file-exchange link page, then the area itself
        page.goto(f"{base}/tickets/{number}")
        page.get_by_role("button", name="Link zum Dateiaustausch anfordern").click()
        check()
        area = page.locator(".file-link a").get_attribute("href")
        assert area
        page.goto(area)
        upload = tmp_path / "druckerprotokoll-mit-einem-sehr-langen-dateinamen-2026-12.txt"
        upload.write_text("E42\n" * 300, encoding="utf-8")
        page.locator("#files").set_input_files(str(upload))
        page.locator("main").get_by_role("button", name="Dateien hochladen").click()
        expect(page.get_by_role("status")).to_contain_text("1 Datei hochgeladen")
        for phone in PHONES:
            page.set_viewport_size({"width": phone, "height": 780})
            for url in [*private, area.removeprefix(base)]:
                check(url)
        assert too_wide == {}

        # My tickets: every row a card; its Status and Age are on the screen
        for phone in PHONES:
            page.set_viewport_size({"width": phone, "height": 780})
            page.goto(f"{base}/tickets")
            row = page.get_by_role("row").filter(has_text=number)
            for label in ("Status", "Alter"):
                cell = row.locator(f"td[data-label='{label}']")
                expect(cell).to_be_visible()
                box = cell.bounding_box()
                assert box and box["x"] >= 0 and box["x"] + box["width"] <= phone, (label, box)
            expect(row.locator("td[data-label='Status']")).to_contain_text("neu")
        page.set_viewport_size({"width": 390, "height": 780})
        page.goto(f"{base}/tickets")
        shot("12-phone-my-tickets")
        page.goto(f"{base}/tickets/{number}")
        expect(page.get_by_text(LONG_URL)).to_be_visible()
        shot("13-phone-ticket")
        page.goto(f"{base}/templates")
        shot("14-phone-templates")


def test_the_language_switch_stays_with_the_customer(server: tuple[str, Path],  # noqa: F811
                                                     database_url: str,
                                                     tmp_path: Path) -> None:
    from playwright.sync_api import expect

    base, _ = server
    customer_with_password(database_url)
    outbox = Maildir(tmp_path / "outbox")

    with german_page(tmp_path, "portal", numbered=False, java_script_enabled=False) as (
            page, shot):
        log_in(page, base)
        expect(page.get_by_role("heading", name="Meine Tickets")).to_be_visible()
        page.get_by_role("button", name="English").click()
        expect(page).to_have_url(f"{base}/tickets")
        expect(page.get_by_role("heading", name="My tickets")).to_be_visible()
        expect(page.locator("html")).to_have_attribute("lang", "en")
        page.get_by_role("link", name="Ticket templates").click()
        expect(page.get_by_text("By email: incident@support.example.com")).to_be_visible()
        shot("15-language-switch")
        page.get_by_role("button", name="Log out").click()
        expect(page).to_have_url(f"{base}/login")
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()
        log_in(page, base, login="Log in")
        expect(page.get_by_role("heading", name="My tickets")).to_be_visible()

    # a fresh browser that asks for German, without the cookie: the stored language
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with german_page(fresh, "fresh", numbered=False, java_script_enabled=False) as (page, _):
        log_in(page, base)
        expect(page.get_by_role("heading", name="My tickets")).to_be_visible()
        page.goto(f"{base}/templates/incident")
        page.get_by_label("Subject").fill("Printer on the 2nd floor")
        page.get_by_label("Affected system").fill("HP LaserJet 4000")
        page.get_by_role("button", name="Create ticket").click()
        expect(page.get_by_role("status")).to_contain_text("has been created")
        number = re.search(r"/tickets/(\d+)", page.url)
        assert number
    # the customer's acknowledgment, not the staff notification for the same ticket
    ack = outbox.wait_for(lambda m: f"Ticket#{number.group(1)}" in str(m["Subject"])
                          and "max.mustermann@acme.example" in str(m["To"]))
    assert "We have received your request" in str(ack["Subject"])
    assert text_of(ack).startswith("Hello Max Mustermann,")
