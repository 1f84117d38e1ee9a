"""The FAQ's pure parts: Markdown sanitising, front matter files, words, stems and snippets."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from gateway.errors import InvalidInput
from gateway.faq.markdown import clean_html, markdown_to_text, render_markdown
from gateway.faq.source import (
    ArticleSource,
    parse_text,
    read_sources,
    render_file,
    slugify,
)
from gateway.faq.text import Analyzer, guess_language, vocabulary, words

GOOD = """\
---
title: Der Drucker druckt nur leere Seiten
category: Arbeitsplatz/Drucker
keywords: [Drucker, Toner]
language: de
visibility: customers
---
Kommen nur **leere Seiten**, prüfen Sie den Toner.
"""


# -- Markdown to safe HTML ------------------------------------------------------------------

@pytest.mark.parametrize("markdown", [
    "Hallo <script>alert('x')</script> Welt",
    "<img src=x onerror=alert(1)>",
    '<a href="https://example.com" onclick="steal()">Link</a>',
    "[Klick](javascript:alert(1))",
    "[Klick](JaVaScRiPt:alert(1))",
    "[Klick](vbscript:msgbox(1))",
    "<iframe src='https://evil.example'></iframe>",
    "<div style='background:url(javascript:alert(1))'>x</div>",
])
def test_markdown_never_yields_script_handlers_or_script_links(markdown: str) -> None:
    elements = _elements(render_markdown(markdown))
    assert all(tag not in ("script", "iframe", "div") for tag, _ in elements)
    for _, attributes in elements:
        assert not [name for name in attributes if name.startswith("on") or name == "style"]
        href = (attributes.get("href") or attributes.get("src") or "").lower()
        assert not href.startswith(("javascript", "vbscript", "data"))


def _elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    """Every start tag of `html` with its attributes, as a browser's parser sees them."""
    found: list[tuple[str, dict[str, str | None]]] = []

    class Collector(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append((tag, dict(attrs)))

    Collector().feed(html)
    return found


def test_markdown_keeps_formatting_lists_tables_and_safe_links() -> None:
    html = render_markdown("# Titel\n\n**fett** und *kursiv*\n\n1. eins\n2. zwei\n\n"
                           "| a | b |\n|---|---|\n| 1 | 2 |\n\n[Hilfe](https://example.com/h)")
    for expected in ("<h1>Titel</h1>", "<strong>fett</strong>", "<em>kursiv</em>", "<ol>",
                     "<table>", '<a href="https://example.com/h"'):
        assert expected in html
    assert 'rel="noopener noreferrer nofollow"' in html


def test_clean_html_removes_what_a_stored_row_might_smuggle_in() -> None:
    cleaned = clean_html('<p onclick="x">a<script>b()</script><a href="javascript:x">l</a>'
                         '<img src="https://x/y.png" onerror="z"></p>')
    assert "onclick" not in cleaned and "<script" not in cleaned and "b()" not in cleaned
    assert "javascript" not in cleaned and "onerror" not in cleaned
    assert '<img src="https://x/y.png">' in cleaned
    assert _elements(cleaned) == [("p", {}), ("a", {"rel": "noopener noreferrer nofollow"}),
                                  ("img", {"src": "https://x/y.png"})]


def test_plain_text_has_one_block_per_line_and_decoded_entities() -> None:
    text = markdown_to_text("# Drucker\n\nTonerkartusche & Trommel\n\n- eins\n- zwei\n")
    assert text == "Drucker\nTonerkartusche & Trommel\neins\nzwei"


# -- files with front matter --------------------------------------------------------------

def test_a_good_file_is_read() -> None:
    source = parse_text(GOOD, origin="a.md", default_slug="drucker-leer")
    assert source.title == "Der Drucker druckt nur leere Seiten"
    assert source.category == ("Arbeitsplatz", "Drucker")
    assert source.category_keys == ("arbeitsplatz", "arbeitsplatz/drucker")
    assert source.keywords == ("Drucker", "Toner")
    assert (source.language, source.visibility, source.key) == ("de", "customers",
                                                                "drucker-leer")


def test_export_format_reads_back_unchanged() -> None:
    source = parse_text(GOOD, origin="a.md", default_slug="x")
    again = parse_text(render_file(source), origin="b.md", default_slug="other")
    assert again == ArticleSource(**{**source.__dict__, "origin": "b.md"})


@pytest.mark.parametrize(("text", "problem"), [
    ("no front matter\n", "no front matter"),
    ("---\ntitle: x\ncategory: y\nnever closed\n", "no closing '---'"),
    ("---\ntitle: [unclosed\ncategory: y\n---\ntext\n", "not valid YAML (line 3)"),
    ("---\ncategory: y\n---\ntext\n", "title: is required"),
    ("---\ntitle: x\n---\ntext\n", "category: is required"),
    ("---\ntitle: x\ncategory: y\nlanguage: fr\n---\ntext\n", "language: 'fr' is not one of"),
    ("---\ntitle: x\ncategory: y\nvisibility: secret\n---\ntext\n", "visibility: 'secret'"),
    ("---\ntitle: x\ncategory: y\ntilte: z\n---\ntext\n", "unknown key 'tilte'"),
    ("---\ntitle: x\ncategory: y\nslug: Not A Slug\n---\ntext\n", "slug: 'Not A Slug'"),
    ("---\ntitle: x\ncategory: a//b\n---\ntext\n", "every level of the path"),
    ("---\ntitle: x\ncategory: y\nkeywords: {a: 1}\n---\ntext\n", "keywords: must be"),
    ("---\ntitle: x\ncategory: y\n---\n\n", "no text after the front matter"),
    ("---\n- a list\n---\ntext\n", "must be 'key: value' lines"),
])
def test_bad_front_matter_is_reported_with_the_file_name(text: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_text(text, origin="faq/bad.md", default_slug="bad")
    assert str(raised.value).startswith("faq/bad.md: ")
    assert problem in str(raised.value)


def test_every_bad_file_is_listed_and_nothing_is_returned(tmp_path: Path) -> None:
    (tmp_path / "good.md").write_text(GOOD, encoding="utf-8")
    (tmp_path / "no-title.md").write_text("---\ncategory: y\n---\ntext\n", encoding="utf-8")
    (tmp_path / "latin1.md").write_bytes("---\ntitle: Grüße\n---\n".encode("latin-1"))
    twin = GOOD.replace("visibility: customers", "visibility: public\nslug: good")
    (tmp_path / "twin.md").write_text(twin, encoding="utf-8")
    with pytest.raises(InvalidInput) as raised:
        read_sources(sorted(tmp_path.glob("*.md")))
    message = str(raised.value)
    assert "3 problem(s), nothing imported" in message
    assert "no-title.md: title: is required" in message
    assert "latin1.md: not UTF-8 text" in message
    assert "slug 'good' is also used by" in message


def test_slugs_transliterate_german() -> None:
    assert slugify("Größe & Übersicht: Straße") == "groesse-uebersicht-strasse"
    assert slugify("E-Mail/Smartphone") == "e-mail-smartphone"


# -- words, stems, snippets --------------------------------------------------------------

def test_words_and_vocabulary() -> None:
    assert words("Der Drucker_2 druckt: E-Mail!") == ["der", "drucker", "druckt", "mail"]
    assert vocabulary("Der Drucker druckt 2026 am Montag") == {"drucker", "druckt", "montag"}


def test_german_word_forms_share_a_stem() -> None:
    analyzer = Analyzer()
    assert analyzer.stem("druckers", "de") == analyzer.stem("drucker", "de")
    assert analyzer.stem("passwörter", "de") == analyzer.stem("passwort", "de")
    assert "printer" in analyzer.stems("printers")


def test_query_terms_drop_stop_words_and_mail_etiquette() -> None:
    terms = Analyzer().query_terms("Hallo, mein Drucker druckt nicht mehr. Viele Grüße, Max")
    assert terms.words == ("drucker", "druckt", "max")


def test_matched_terms_by_stem() -> None:
    analyzer = Analyzer()
    terms = analyzer.query_terms("Druckers Toner Kaffee")
    assert analyzer.matched_terms(terms, "Der Drucker braucht neuen Toner.", "de") == {0, 1}


def test_word_forms_with_umlauts_in_their_first_letters_are_matched() -> None:
    # only words that begin like a query stem are stemmed; "Ü", "ö" there are plain vowels
    analyzer = Analyzer()
    terms = analyzer.query_terms("Uebergabe Oeffnung")
    text = "Die Übergaben laufen, die Öffnungen auch; Obst und Uhren nicht."
    assert analyzer.word_terms(terms, text, "de") == {"übergaben": 0, "öffnungen": 1}
    assert {"übe", "ube", "öff", "off"} <= terms.word_starts


def test_snippet_shows_the_best_passage_with_the_matches_marked() -> None:
    analyzer = Analyzer()
    text = ("Allgemeines vorweg. Das hier ist nur Einleitung ohne Bezug. "
            "Der Toner des Druckers ist leer, bitte die Kartusche wechseln. Schluss.")
    snippet = analyzer.snippet(analyzer.query_terms("Drucker Toner"), text, "de")
    marked = [piece for piece, is_match in snippet.pieces if is_match]
    assert marked == ["Toner", "Druckers"]
    assert snippet.text.startswith("… Der Toner des Druckers ist leer")


def test_snippet_of_a_long_sentence_is_cut_around_the_match_on_word_bounds() -> None:
    analyzer = Analyzer()
    text = " ".join(["wort"] * 200 + ["Drucker"] + ["wort"] * 200)
    snippet = analyzer.snippet(analyzer.query_terms("Drucker"), text, "de", width=100)
    assert "Drucker" in snippet.text and len(snippet.text) <= 110
    assert snippet.text.startswith("… wort") and snippet.text.endswith("wort …")


def test_snippet_without_a_match_is_the_beginning() -> None:
    analyzer = Analyzer()
    snippet = analyzer.snippet(analyzer.query_terms("Kaffee"), "Erster Satz. Zweiter.", "de")
    assert snippet.text == "Erster Satz. Zweiter."
    assert all(not is_match for _, is_match in snippet.pieces)


def test_language_guess() -> None:
    assert guess_language("Ich kann mich nicht mehr anmelden, das Passwort ist weg") == "de"
    assert guess_language("I cannot log in and my password does not work") == "en"
    assert guess_language("VPN") is None
