"""The FAQ in a real browser: Debian's Chromium driven by Playwright for Python, against a
real `ticketgw serve --demo` (the demo FAQ in German and English).

Browse a category down to an article, search with a German word form ("Druckers" finds the
articles about the "Drucker") and with typos ("Passwrot", "Pasword"), switch the language
filter to English (the search stays, the English article replaces the German one), vote
"helpful" and see the count change. No login: the FAQ's public pages work without one.

Chromium must be at /usr/bin/chromium; when it is not, this test FAILS, it never skips.
Screenshots go to the test's directory, and to $TGW_SCREENSHOTS_DIR when set.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serve_helpers import free_port, serve_config, serving
from tests.web.browser import german_page


@pytest.fixture
def demo_server(database_url: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    config = serve_config(tmp_path / "ticketgw.toml", database_url, web_port=port)
    base = f"http://127.0.0.1:{port}"
    with serving(["--config", str(config), "serve", "--demo"], tmp_path, f"{base}/healthz"):
        yield base


def test_browse_search_and_vote_in_chromium(demo_server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    base = demo_server

    with german_page(tmp_path, "faq") as (page, shot):

        # browse: the navigation, a category, its sub-category, an article
        page.goto(f"{base}/login")
        page.get_by_role("link", name="FAQ").click()
        expect(page.get_by_role("heading", name="Häufige Fragen")).to_be_visible()
        shot("explorer")
        page.get_by_role("link", name="Arbeitsplatz").click()
        page.get_by_role("link", name="Drucker", exact=True).click()
        expect(page.get_by_role("heading", name="Drucker", exact=True)).to_be_visible()
        shot("category")
        page.get_by_role("link", name="Der Drucker druckt nur leere Seiten").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(
            "Der Drucker druckt nur leere Seiten")
        expect(page.get_by_text("Tonerkartusche prüfen.")).to_be_visible()

        # search: a German word form, then typos in German and English
        page.goto(f"{base}/faq")
        page.get_by_label("In den FAQ suchen").fill("Druckers")
        page.get_by_role("button", name="Suche").click()
        results = page.get_by_role("region", name="Suchergebnisse")
        expect(results.get_by_role("link", name="Der Drucker druckt nur leere Seiten")
               ).to_be_visible()
        expect(results.locator("mark").first).to_have_text("Drucker")
        shot("search-word-form")
        page.get_by_label("In den FAQ suchen").fill("Passwrot")
        page.get_by_role("button", name="Suche").click()
        expect(page.get_by_role("link", name="Passwort vergessen oder abgelaufen")).to_be_visible()
        expect(page.get_by_text("Auch gesucht: passwort")).to_be_visible()
        shot("search-typo")
        page.get_by_label("In den FAQ suchen").fill("Pasword")
        page.get_by_role("button", name="Suche").click()
        expect(page.get_by_role("link", name="Passwort vergessen oder abgelaufen")).to_be_visible()
        expect(page.get_by_role("link", name="Forgotten or expired password")).to_have_count(0)
        # the language filter is the one applied; choosing English keeps the search
        page.get_by_role("navigation", name="Sprache der Artikel").get_by_role(
            "link", name="Englisch").click()
        expect(page.get_by_role("link", name="Forgotten or expired password")).to_be_visible()
        expect(page.get_by_role("link", name="Passwort vergessen oder abgelaufen")
               ).to_have_count(0)
        expect(page.get_by_label("In den FAQ suchen")).to_have_value("Pasword")
        shot("search-english-filter")

        # vote: the count changes
        page.get_by_label("In den FAQ suchen").fill("Passwrot")
        page.get_by_role("button", name="Suche").click()
        page.get_by_role("link", name="Passwort vergessen oder abgelaufen").click()
        expect(page.locator("#vote-count")).to_have_text("0 fanden ihn hilfreich, 0 nicht.")
        page.get_by_role("button", name="Ja").click()
        expect(page.get_by_role("status")).to_contain_text("Danke für Ihre Bewertung")
        expect(page.locator("#vote-count")).to_have_text("1 fand ihn hilfreich, 0 nicht.")
        shot("voted")
        page.get_by_role("button", name="Nein").click()    # the same browser changes its mind
        expect(page.locator("#vote-count")).to_have_text("0 fanden ihn hilfreich, 1 nicht.")
