"""The FAQ pages over HTTP on both databases: explorer, articles, visibility, search, votes."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from gateway.app import App
from gateway.faq.search import CUSTOMERS, search, suggest
from tests.integration.faq.test_faq import load_demo_faq
from tests.web.conftest import csrf_of, log_in, new_browser, set_password


@pytest.fixture
def faq(app: App) -> None:
    load_demo_faq(app)


def counts(html: str) -> tuple[int, int]:
    match = re.search(r'id="vote-count">(\d+) (?:fand|fanden) ihn hilfreich, (\d+) nicht', html)
    assert match, html
    return int(match.group(1)), int(match.group(2))


def test_the_explorer_works_without_login_by_category(faq: None, browser: TestClient) -> None:
    root = browser.get("/faq", headers={"Accept-Language": "de"})
    assert root.status_code == 200
    assert 'href="/faq">FAQ</a>' in root.text                       # in the navigation
    for name in ("Arbeitsplatz", "Konto und Passwort", "Netzwerk"):
        assert name in root.text
    assert "Workplace" not in root.text                              # German by default
    category = browser.get("/faq?category=arbeitsplatz&lang=de")
    assert 'href="/faq?category=arbeitsplatz%2Fdrucker&amp;lang=de">Drucker</a>' in category.text
    printers = browser.get("/faq?category=arbeitsplatz%2Fdrucker&lang=de")
    assert 'href="/faq/drucker-leere-seiten"' in printers.text
    english = browser.get("/faq?lang=en")
    assert "Workplace" in english.text and "Arbeitsplatz" not in english.text
    assert browser.get("/faq?category=nope").status_code == 404


def test_an_article_page_shows_sanitized_html_and_security_headers(
        faq: None, browser: TestClient) -> None:
    page = browser.get("/faq/drucker-leere-seiten")
    assert page.status_code == 200
    assert "<h1>Der Drucker druckt nur leere Seiten</h1>" in page.text
    assert "<strong>Tonerkartusche prüfen.</strong>" in page.text
    assert 'lang="de"' in page.text and "Drucker, Toner" in page.text
    assert "script-src" not in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert browser.get("/faq/no-such-article").status_code == 404


def test_customers_only_articles_need_a_login(faq: None, app: App, customers: None,
                                              browser: TestClient) -> None:
    hidden = browser.get("/faq/email-auf-dem-smartphone")
    assert hidden.status_code == 303 and hidden.headers["location"] == "/login"
    anonymous = browser.get("/faq?category=e-mail%2Fsmartphone&lang=de")
    assert "Dienstliche E-Mails" not in anonymous.text
    found = browser.get("/faq?q=Smartphone+Outlook")
    assert "email-auf-dem-smartphone" not in found.text
    set_password(app, "mmuster")
    log_in(browser, "mmuster")
    assert browser.get("/faq/email-auf-dem-smartphone").status_code == 200
    found = browser.get("/faq?q=Smartphone+Outlook")
    assert 'href="/faq/email-auf-dem-smartphone"' in found.text
    assert "Nur für Kunden" in found.text


def test_search_finds_word_forms_and_typos_with_the_passage(faq: None,
                                                            browser: TestClient) -> None:
    forms = browser.get("/faq?q=Druckers", headers={"Accept-Language": "de"})
    assert 'href="/faq/drucker-leere-seiten"' in forms.text
    assert "<mark>Drucker</mark>" in forms.text
    assert "Auch gesucht" not in forms.text          # a word form, not a typo
    typo = browser.get("/faq?q=Passwrot")
    assert 'href="/faq/passwort-vergessen"' in typo.text
    assert "Auch gesucht: passwort" in typo.text
    assert "<mark>Passwort</mark>" in typo.text
    nothing = browser.get("/faq?q=Kaffeemaschine")
    assert "Kein Artikel gefunden" in nothing.text
    hostile = browser.get('/faq?q=%22%3E%3Cscript%3Ealert(1)%3C/script%3E')
    assert hostile.status_code == 200 and "<script>alert(1)" not in hostile.text


def test_english_pages_for_an_english_browser(faq: None, browser: TestClient) -> None:
    page = browser.get("/faq/printer-blank-pages", headers={"Accept-Language": "en-GB,en"})
    assert "Was this article helpful?" in page.text
    assert "0 found it helpful, 0 did not." in page.text


def test_votes_need_csrf_count_once_per_browser_and_can_change(
        faq: None, web: FastAPI, browser: TestClient) -> None:
    page = browser.get("/faq/passwort-vergessen", headers={"Accept-Language": "de"})
    assert counts(page.text) == (0, 0)
    token = csrf_of(page.text)
    refused = browser.post("/faq/passwort-vergessen/vote", data={"helpful": "yes"})
    assert refused.status_code == 403
    wrong = browser.post("/faq/passwort-vergessen/vote", data={"helpful": "yes",
                                                               "csrf": "0" * 64})
    assert wrong.status_code == 403
    voted = browser.post("/faq/passwort-vergessen/vote", data={"helpful": "yes",
                                                               "csrf": token})
    assert voted.status_code == 303
    assert voted.headers["location"] == "/faq/passwort-vergessen?voted=1"
    again = browser.post("/faq/passwort-vergessen/vote", data={"helpful": "yes",
                                                               "csrf": token})
    assert again.status_code == 303
    after = browser.get("/faq/passwort-vergessen?voted=1", headers={"Accept-Language": "de"})
    assert counts(after.text) == (1, 0) and "Danke für Ihre Bewertung" in after.text

    with new_browser(web) as other:
        other_page = other.get("/faq/passwort-vergessen", headers={"Accept-Language": "de"})
        other.post("/faq/passwort-vergessen/vote", data={"helpful": "no",
                                                         "csrf": csrf_of(other_page.text)})
        assert counts(other.get("/faq/passwort-vergessen",
                                headers={"Accept-Language": "de"}).text) == (1, 1)
    browser.post("/faq/passwort-vergessen/vote", data={"helpful": "no", "csrf": token})
    assert counts(browser.get("/faq/passwort-vergessen",
                              headers={"Accept-Language": "de"}).text) == (0, 2)
    bad = browser.post("/faq/passwort-vergessen/vote", data={"helpful": "maybe",
                                                             "csrf": token})
    assert bad.status_code == 400


def test_anonymous_votes_on_customers_only_articles_are_refused(
        faq: None, browser: TestClient) -> None:
    token = csrf_of(browser.get("/faq/passwort-vergessen").text)
    response = browser.post("/faq/email-auf-dem-smartphone/vote",
                            data={"helpful": "yes", "csrf": token})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert browser.post("/faq/nope/vote", data={"helpful": "yes", "csrf": token}
                        ).status_code == 404


def test_an_empty_faq_says_so(browser: TestClient) -> None:
    page = browser.get("/faq", headers={"Accept-Language": "en"})
    assert page.status_code == 200 and "There are no articles here yet." in page.text


def hit_links(html: str) -> list[str]:
    """The article links of the search results, in their order."""
    results = html.split('class="hits"', 1)[1].split("</ol>", 1)[0] if 'class="hits"' in html \
        else ""
    return re.findall(r'<a href="/faq/([^"?]+)" lang="(de|en)"', results)


def current_filter(html: str) -> str:
    filters = html.split('class="filters"', 1)[1].split("</nav>", 1)[0]
    [current] = re.findall(r'<a href="[^"]*lang=(\w+)[^"]*" aria-current="page"', filters)
    return str(current)


@pytest.mark.parametrize("lang, accept", [("de", "en"), ("en", "de"), ("", "de"), ("", "en")])
def test_the_language_filter_is_the_one_applied_to_the_search(
        faq: None, browser: TestClient, lang: str, accept: str) -> None:
    """"VPN FortiClient" matches a German and an English article: the filter (chosen, or
    the visitor's language by default) decides which, and it is the one shown as current."""
    page = browser.get(f"/faq?q=VPN+FortiClient{'&lang=' + lang if lang else ''}",
                       headers={"Accept-Language": accept})
    applied = lang or accept
    assert current_filter(page.text) == applied
    hits = hit_links(page.text)
    assert hits and {language for _, language in hits} == {applied}, hits
    assert 'class="badge">Englisch' not in page.text and 'class="badge">German' not in page.text
    everything = browser.get("/faq?q=VPN+FortiClient&lang=all",
                             headers={"Accept-Language": accept})
    assert current_filter(everything.text) == "all"
    assert {language for _, language in hit_links(everything.text)} == {"de", "en"}


def test_the_language_links_keep_the_search(faq: None, browser: TestClient) -> None:
    page = browser.get("/faq?q=VPN&lang=de", headers={"Accept-Language": "de"})
    filters = page.text.split('class="filters"', 1)[1].split("</nav>", 1)[0]
    assert 'href="/faq?lang=en&amp;q=VPN"' in filters
    assert 'href="/faq?lang=all&amp;q=VPN"' in filters


def test_no_hit_in_the_chosen_language_offers_the_others(faq: None,
                                                        browser: TestClient) -> None:
    """"Papierstau" is only in a German article: the English filter finds nothing, says so
    and links to the results in every language."""
    english = browser.get("/faq?q=Papierstau&lang=en", headers={"Accept-Language": "en"})
    assert hit_links(english.text) == [] and "No article found" in english.text
    assert ('<a href="/faq?lang=all&amp;q=Papierstau">Show the results in other languages (1)'
            in english.text)
    german = browser.get("/faq?q=Papierstau&lang=de", headers={"Accept-Language": "de"})
    assert hit_links(german.text) == [("drucker-papierstau", "de")]
    assert "Treffer in anderen Sprachen" not in german.text


@pytest.mark.backends("postgresql")
def test_a_search_leaves_the_planner_settings_of_the_transaction_as_they_were(
        faq: None, app: App) -> None:
    # the ranked query plans through the GIN index (enable_seqscan off, a custom plan);
    # the caller's transaction, e.g. the worker's for an acknowledgment, keeps its settings
    settings = text("SELECT current_setting('enable_seqscan'), "
                    "current_setting('plan_cache_mode')")
    with app.db.read() as session:
        before = session.execute(settings).one()
        assert search(session, "Drucker leere Seiten", visibilities=CUSTOMERS).hits
        assert session.execute(settings).one() == before == ("on", "auto")
        suggest(session, "Drucker druckt leere Seiten", visibilities=CUSTOMERS, language="de")
        assert session.execute(settings).one() == before
        session.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
        assert search(session, "Drucker", visibilities=CUSTOMERS).hits
        assert session.execute(settings).one() == ("on", "force_generic_plan")


@pytest.mark.backends("postgresql")
def test_the_search_vectors_are_kept_in_the_row(faq: None, app: App) -> None:
    # ts_rank reads every match's vector: from the row, not the TOAST table (migration 0018)
    with app.db.read() as session:
        storage = dict(session.execute(text(
            "SELECT attname, attstorage FROM pg_attribute WHERE attrelid = "
            "'faq_article'::regclass AND attname IN ('search_vector', 'head_vector')")).all())
        assert storage == {"search_vector": "m", "head_vector": "m"}
