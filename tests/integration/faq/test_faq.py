"""The FAQ on both databases: import (CLI), index consistency, search, votes, export."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, inspect, select, text

from gateway.app import App
from gateway.cli.demo import DEMO_FAQ_DIR
from gateway.faq.queries import article_by_key, category_page, list_articles
from gateway.faq.search import CUSTOMERS, PUBLIC, answer_hits, search, suggest
from gateway.faq.source import faq_files, read_sources
from gateway.faq.store import record_vote, save_articles
from gateway.store.models import table_of
from gateway.store.models_faq import FaqArticle, FaqTerm
from tests.conftest import write_config

_article = table_of(FaqArticle)
_term = table_of(FaqTerm)


def load_demo_faq(app: App) -> None:
    with app.db.write() as session:
        save_articles(session, read_sources(faq_files(DEMO_FAQ_DIR)))


def article_count(app: App) -> int:
    with app.db.read() as session:
        return int(session.execute(select(func.count()).select_from(_article)).scalar_one())


def keys(hits: Any) -> list[str]:
    return [hit.key for hit in hits]


# -- schema ------------------------------------------------------------------------------

def test_the_search_objects_of_each_database_exist(app: App, backend: str) -> None:
    with app.db.engine.connect() as connection:
        if backend == "sqlite":
            names = set(connection.exec_driver_sql(
                "SELECT name FROM sqlite_master").scalars())
            assert {"faq_fts", "faq_head_fts", "faq_term_trgm", "faq_term_trgm_insert",
                    "faq_term_trgm_delete", "faq_term_trgm_update"} <= names
        else:
            columns = {c["name"] for c in inspect(connection).get_columns("faq_article")}
            assert {"search_vector", "head_vector"} <= columns
            indexes = set(connection.execute(text(
                "SELECT indexname FROM pg_indexes WHERE tablename LIKE 'faq_%'")).scalars())
            assert {"ix_faq_article_search", "ix_faq_article_head", "ix_faq_term_trgm"} <= indexes
            assert connection.execute(text(
                "SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'")).scalar() == 1


# -- import ------------------------------------------------------------------------------

def test_import_is_idempotent_and_updates_a_changed_file(run_cli: Any, database_url: str,
                                                         tmp_path: Path, app: App) -> None:
    config = write_config(tmp_path / "ticketgw.toml", database_url)
    folder = tmp_path / "faq"
    shutil.copytree(DEMO_FAQ_DIR, folder)
    first = run_cli("--config", str(config), "faq", "import", str(folder))
    assert first.exit_code == 0, first.stderr
    assert "10 added, 0 updated, 0 unchanged" in first.stdout
    again = run_cli("--config", str(config), "faq", "import", str(folder))
    assert "0 added, 0 updated, 10 unchanged" in again.stdout
    assert article_count(app) == 10

    changed = folder / "de" / "drucker-leere-seiten.md"
    changed.write_text(changed.read_text(encoding="utf-8").replace(
        "Tonerkartusche prüfen", "Zeppelinkartusche prüfen"), encoding="utf-8")
    third = run_cli("--config", str(config), "faq", "import", str(folder))
    assert "0 added, 1 updated, 9 unchanged" in third.stdout
    with app.db.read() as session:
        assert keys(search(session, "Zeppelinkartusche", visibilities=PUBLIC).hits) == [
            "drucker-leere-seiten"]
        assert search(session, "Tonerkartusche", visibilities=PUBLIC).hits == ()
        words = set(session.execute(select(_term.c.word)).scalars())
    assert "zeppelinkartusche" in words and "tonerkartusche" not in words


def test_a_bad_file_is_named_and_nothing_is_imported(run_cli: Any, database_url: str,
                                                     tmp_path: Path, app: App) -> None:
    config = write_config(tmp_path / "ticketgw.toml", database_url)
    folder = tmp_path / "faq"
    shutil.copytree(DEMO_FAQ_DIR, folder)
    (folder / "de" / "kaputt.md").write_text("---\ntitle: Kaputt\nlanguage: fr\n---\nText\n",
                                             encoding="utf-8")
    (folder / "en" / "broken.md").write_text("no front matter at all\n", encoding="utf-8")
    result = run_cli("--config", str(config), "faq", "import", str(folder))
    assert result.exit_code == 1
    assert "kaputt.md: category: is required; language: 'fr' is not one of de, en" in (
        result.stderr)
    assert "broken.md: no front matter" in result.stderr
    assert "2 problem(s), nothing imported" in result.stderr
    assert article_count(app) == 0


def test_list_json_and_export_round_trip(run_cli: Any, database_url: str, tmp_path: Path,
                                         app: App) -> None:
    import json

    config = write_config(tmp_path / "ticketgw.toml", database_url)
    assert run_cli("--config", str(config), "faq", "import", str(DEMO_FAQ_DIR)).exit_code == 0
    listed = json.loads(run_cli("--config", str(config), "faq", "list", "--json").stdout)
    assert len(listed) == 10
    printer = next(a for a in listed if a["slug"] == "drucker-leere-seiten")
    assert printer["category"] == "Arbeitsplatz/Drucker"
    assert printer["keywords"][:2] == ["Drucker", "Toner"]
    assert set(printer) == {"slug", "title", "category", "language", "visibility", "keywords",
                            "helpful", "not_helpful", "updated"}
    out = tmp_path / "export"
    exported = run_cli("--config", str(config), "faq", "export", str(out))
    assert exported.exit_code == 0, exported.stderr
    assert (out / "arbeitsplatz" / "drucker" / "drucker-leere-seiten.md").is_file()
    refused = run_cli("--config", str(config), "faq", "export", str(out))
    assert refused.exit_code == 1 and "--force" in refused.stderr
    reimport = run_cli("--config", str(config), "faq", "import", str(out))
    assert "0 added, 0 updated, 10 unchanged" in reimport.stdout


# -- search ------------------------------------------------------------------------------

def test_a_german_word_form_finds_the_article(app: App) -> None:
    load_demo_faq(app)
    with app.db.read() as session:
        result = search(session, "Druckers", visibilities=PUBLIC)
    assert keys(result.hits)[:2] == ["drucker-leere-seiten", "drucker-papierstau"] or keys(
        result.hits)[:2] == ["drucker-papierstau", "drucker-leere-seiten"]
    marked = [piece for piece, is_match in result.hits[0].snippet.pieces if is_match]
    assert "Drucker" in marked


@pytest.mark.parametrize(("typed", "expected"), [
    ("Passwrot", "passwort-vergessen"), ("Pasword", "reset-password"),
    ("Drukcer leere", "drucker-leere-seiten"), ("VPN Verbindng", "vpn-verbindung-bricht-ab"),
])
def test_typos_are_corrected_from_the_vocabulary(app: App, typed: str, expected: str) -> None:
    load_demo_faq(app)
    with app.db.read() as session:
        result = search(session, typed, visibilities=PUBLIC)
    assert expected in keys(result.hits)[:2]
    assert result.corrections


def test_anonymous_visitors_find_only_public_articles(app: App) -> None:
    load_demo_faq(app)
    with app.db.read() as session:
        public = search(session, "Smartphone Outlook", visibilities=PUBLIC)
        customers = search(session, "Smartphone Outlook", visibilities=CUSTOMERS)
        page = category_page(session, "e-mail", visibilities=PUBLIC, language=None)
    assert "email-auf-dem-smartphone" not in keys(public.hits)
    assert keys(customers.hits)[0] == "email-auf-dem-smartphone"
    assert page is not None and page.children == () and page.articles == ()


def test_every_word_first_then_any_word(app: App) -> None:
    load_demo_faq(app)
    with app.db.read() as session:
        both = search(session, "Drucker Toner", visibilities=PUBLIC)
        either = search(session, "Drucker Homeoffice", visibilities=PUBLIC)
    assert both.every_word and keys(both.hits) == ["drucker-leere-seiten"]
    assert not either.every_word
    assert {"drucker-leere-seiten", "vpn-verbindung-bricht-ab"} <= set(keys(either.hits))


def test_suggestions_need_a_good_match(app: App) -> None:
    with app.db.read() as session:
        assert suggest(session, "Drucker druckt leere Seiten", visibilities=CUSTOMERS,
                       language="de") == []
    load_demo_faq(app)
    with app.db.read() as session:
        printer = suggest(session, "Drucker im 2. OG druckt nicht\nSeit heute druckt der "
                          "Drucker nur leere Seiten.", visibilities=CUSTOMERS, language="de")
        coffee = suggest(session, "Die Kaffeemaschine in der Küche ist kaputt",
                         visibilities=CUSTOMERS, language="de")
        weak = suggest(session, "Neuer Monitor für den Empfang, heute Nachmittag bitte",
                       visibilities=CUSTOMERS, language="de")
        english = suggest(session, "Printer prints blank pages\nSince this morning the "
                          "printer only prints blank pages.", visibilities=PUBLIC,
                          language="en")
    assert keys(printer)[0] == "drucker-leere-seiten" and len(printer) <= 3
    assert printer[0].snippet.text
    assert coffee == [] and weak == []
    assert keys(english) == ["printer-blank-pages"]          # the ticket's language only


def test_mail_questions_use_typo_alternatives(app: App) -> None:
    load_demo_faq(app)
    with app.db.read() as session:
        hits = answer_hits(session, "Hallo, mein Pasword ist abgelaufen, was nun? Gruß Max",
                           visibilities=PUBLIC, limit=3)
    assert keys(hits) == ["passwort-vergessen"]


def test_a_hostile_query_is_just_text(app: App) -> None:
    load_demo_faq(app)
    with app.db.read() as session:
        for query in ('" OR 1=1 --', "NEAR(a b)", "drucker* & | ! ( ) :", "'; DROP TABLE x",
                      "ä" * 5000, ""):
            search(session, query, visibilities=PUBLIC)
            suggest(session, query, visibilities=PUBLIC, language="de")


# -- votes and pages ---------------------------------------------------------------------

def test_one_vote_per_browser_and_changing_it_moves_the_count(app: App) -> None:
    load_demo_faq(app)
    with app.db.read() as session:
        view = article_by_key(session, "passwort-vergessen")
    assert view is not None
    with app.db.write() as session:
        record_vote(session, view.id, "a" * 64, True)
        record_vote(session, view.id, "a" * 64, True)
        record_vote(session, view.id, "b" * 64, True)
        record_vote(session, view.id, "c" * 64, False)
    with app.db.write() as session:
        record_vote(session, view.id, "c" * 64, True)
        record_vote(session, view.id, "b" * 64, False)
    with app.db.read() as session:
        after = article_by_key(session, "passwort-vergessen")
        listed = {a["slug"]: a for a in list_articles(session)}
    assert after is not None and (after.helpful, after.not_helpful) == (2, 1)
    assert (listed["passwort-vergessen"]["helpful"],
            listed["passwort-vergessen"]["not_helpful"]) == (2, 1)


def test_the_category_tree_counts_visible_articles(app: App) -> None:
    load_demo_faq(app)
    with app.db.read() as session:
        root_de = category_page(session, None, visibilities=PUBLIC, language="de")
        network = category_page(session, "netzwerk", visibilities=CUSTOMERS, language="de")
        unknown = category_page(session, "nope", visibilities=PUBLIC, language=None)
    assert root_de is not None and network is not None and unknown is None
    assert [(c.name, c.articles) for c in root_de.children] == [
        ("Arbeitsplatz", 2), ("Konto und Passwort", 1), ("Netzwerk", 1)]
    assert [(c.name, c.articles) for c in network.children] == [("Dateiablage", 1),
                                                                ("VPN", 1)]
    assert network.articles == ()
