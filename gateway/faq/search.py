"""Searching the FAQ: a query in, ranked articles with their best passage out.

One ranked, indexed query per search, in the database's own full-text search:
- SQLite: FTS5 `faq_fts` (stems made by `text.Analyzer`, see there), ranked by `bm25` with
  title 10, keywords 5, text 1;
- PostgreSQL: `faq_article.search_vector @@ (to_tsquery('german', q) || to_tsquery('english',
  q))` on its GIN index, ranked by `ts_rank` (title A, keywords B, text D).
Visibility is part of that query: anonymous visitors get `PUBLIC` articles only. On
PostgreSQL that query is planned through the GIN index (see `_INDEX_PLAN`); the caller's
transaction gets its planner settings back right after it.

Typo tolerance (`search`, not `suggest`): query words of 4+ letters that are not in the
vocabulary (`faq_term`) get the closest vocabulary words as alternatives, searched besides
the word as typed (up to three, closest first). Candidates come by trigrams (PostgreSQL:
`pg_trgm`'s `%` on a GIN index; SQLite: the FTS5 trigram table `faq_term_trgm`); the ones
kept are within an edit distance of 1
(words up to 5 letters) or 2 (longer), transpositions counting 1 (rapidfuzz's OSA); a word
with a close vocabulary word of its own stem is a word form, not a typo. That is one indexed
lookup for all words plus one per unknown word (at most 3).

`search` (the web) wants every word and falls back to any word. `search` and `answer_hits`
take a language: then only articles in it are ranked (the portal's language filter, the
question's language of an FAQ mail), searched in that language's stems. `suggest` (the
acknowledgment: one query, no typo lookups, only articles in the ticket's language, searched
in that language's stems) and the FAQ mail want any word in an article's title or keywords,
look at the best `CANDIDATES` and keep only `good_match`es: a query word in the title or
keywords, and two query words in all (or every word of a one- or two-word query), most
matched words first. Read-only; never raises for any query text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rapidfuzz.distance import OSA
from sqlalchemy import bindparam, select, text
from sqlmodel import Session

from gateway.faq.text import Analyzer, QueryTerms, Snippet
from gateway.store.models import table_of
from gateway.store.models_faq import FaqArticle, FaqTerm

PUBLIC: tuple[str, ...] = ("public",)
CUSTOMERS: tuple[str, ...] = ("public", "customers")
MAX_QUERY_WORDS = 12
MAX_CORRECTED_WORDS = 3
MAX_ALTERNATIVES = 3       # per word: the closest vocabulary words (distance, then frequency)
CANDIDATES = 10            # ranked articles looked at for suggestions and mail answers
SUGGEST_WORDS = 10         # of the ticket's title and first text (the title comes first)
SNIPPET_SOURCE_CHARS = 10_000   # of an article's text, for snippets and match counts

_SQLITE_RANKED = (   # rank ids first, then read the few rows' texts (not every match's)
    "SELECT a.id, a.key, a.title, a.keywords, a.body_text, a.language, a.visibility, "
    "c.key AS category FROM (SELECT {table}.rowid AS id, {rank} AS score FROM {table} "
    "JOIN faq_article v ON v.id = {table}.rowid WHERE {table} MATCH :match "
    "AND v.visibility IN :visibilities AND v.language IN :languages "
    "ORDER BY score LIMIT :limit) ranked "
    "JOIN faq_article a ON a.id = ranked.id JOIN faq_category c ON c.id = a.category_id "
    "ORDER BY ranked.score, a.id")
_POSTGRES_RANKED = (   # the same; the query in each language's configuration, or in one
    "WITH query AS (SELECT {tsquery} AS q), ranked AS (SELECT a.id, "
    "ts_rank(a.{vector}, query.q) AS rank FROM faq_article a, query "
    "WHERE a.{vector} @@ query.q AND a.visibility IN :visibilities "
    "AND a.language IN :languages ORDER BY rank DESC, a.id LIMIT :limit) "
    "SELECT a.id, a.key, a.title, a.keywords, a.body_text, a.language, a.visibility, "
    "c.key AS category FROM ranked JOIN faq_article a ON a.id = ranked.id "
    "JOIN faq_category c ON c.id = a.category_id ORDER BY ranked.rank DESC, a.id")
_CONFIGS = {"de": "german", "en": "english"}


def _statement(sql: str) -> Any:
    return text(sql).bindparams(bindparam("visibilities", expanding=True),
                                bindparam("languages", expanding=True))


# (dialect, head_only, languages) -> statement
_STATEMENTS: dict[tuple[str, bool, tuple[str, ...]], Any] = {}
_ANY_ARTICLE = select(table_of(FaqArticle).c.id).limit(1)
for _head in (False, True):
    _STATEMENTS["sqlite", _head, ()] = _statement(_SQLITE_RANKED.format(
        table="faq_head_fts" if _head else "faq_fts",
        rank="bm25(faq_head_fts, 2.0, 1.0)" if _head else "bm25(faq_fts, 10.0, 5.0, 1.0)"))
    for _languages in (("de", "en"), ("de",), ("en",)):
        _STATEMENTS["postgresql", _head, _languages] = _statement(_POSTGRES_RANKED.format(
            vector="head_vector" if _head else "search_vector",
            tsquery=" || ".join(f"to_tsquery('{_CONFIGS[lang]}', :match)"
                                for lang in _languages)))
# PostgreSQL: the ranked query reads its matches through the GIN index, never by a
# sequential scan. When a query word is in a third of the articles the planner prefers the
# scan, which detoasts every row's tsvector for `@@` and the matches' again for `ts_rank`
# (43 against 23 ms for 3,500 of 10,000 articles; bench/portal.py faq-search). A plan made
# for this query's words, not a generic one (psycopg prepares a statement run 5 times, and
# PostgreSQL's cached generic plan keeps whatever it chose). Only for this statement: the
# transaction's own values (read before they are set) are restored right after.
_INDEX_PLAN = text("SELECT current_setting('enable_seqscan') AS seqscan, "
                   "current_setting('plan_cache_mode') AS plan_cache, "
                   "set_config('enable_seqscan', 'off', true), "
                   "set_config('plan_cache_mode', 'force_custom_plan', true)")
_RESTORE_PLAN = text("SELECT set_config('enable_seqscan', :seqscan, true), "
                     "set_config('plan_cache_mode', :plan_cache, true)")
_SQLITE_SIMILAR = text(
    "SELECT t.word, t.articles FROM faq_term_trgm JOIN faq_term t ON t.id = faq_term_trgm.rowid "
    "WHERE faq_term_trgm MATCH :match ORDER BY rank LIMIT 40")
_POSTGRES_SIMILAR = text(
    "SELECT word, articles FROM faq_term WHERE word % :word "
    "ORDER BY similarity(word, :word) DESC LIMIT 40")


@dataclass(frozen=True)
class Hit:
    id: int
    key: str
    title: str
    language: str
    visibility: str
    category: str                      # the category's key
    snippet: Snippet
    title_terms: int                   # query words in the title or keywords
    matched_terms: int                 # query words anywhere


@dataclass(frozen=True)
class SearchResult:
    words: tuple[str, ...]             # the significant words searched
    corrections: tuple[tuple[str, tuple[str, ...]], ...]   # (typed, also searched)
    every_word: bool                   # False: the hits have some of the words, not all
    hits: tuple[Hit, ...]


def good_match(hit: Hit, term_count: int) -> bool:
    """Relevant enough to suggest unasked (see the module docstring)."""
    return hit.title_terms >= 1 and hit.matched_terms >= min(2, term_count)


def search(session: Session, query: str, *, visibilities: Sequence[str],
           limit: int = 10, language: str | None = None) -> SearchResult:
    """The web's search: every word (with typo alternatives), else any word. `language`
    ("de"/"en"): only articles in that language, searched in its stems; None: every one."""
    analyzer = Analyzer()
    languages = _searched_languages(language)
    terms = analyzer.query_terms(query[:1000], MAX_QUERY_WORDS, languages)
    if not terms:
        return SearchResult((), (), True, ())
    alternatives = corrections(session, terms.words, analyzer)
    terms = analyzer.with_alternatives(terms, alternatives)
    found = list(_ranked(session, terms, visibilities, limit, every_word=True,
                         languages=languages))
    every_word = bool(found) or len(terms.words) == 1
    if not found and len(terms.words) > 1:
        found = list(_ranked(session, terms, visibilities, limit, every_word=False,
                             languages=languages))
    return SearchResult(terms.words, tuple(alternatives.items()), every_word,
                        tuple(_hit(analyzer, terms, row) for row in found))


def answer_hits(session: Session, question: str, *, visibilities: Sequence[str],
                limit: int, language: str | None = None) -> list[Hit]:
    """For a mail to the FAQ address: any word (with typo alternatives), good matches only;
    `language` as for `search`."""
    analyzer = Analyzer()
    languages = _searched_languages(language)
    terms = analyzer.query_terms(question[:4000], MAX_QUERY_WORDS * 2, languages)
    if not terms:
        return []
    terms = analyzer.with_alternatives(terms, corrections(session, terms.words, analyzer))
    rows = _ranked(session, terms, visibilities, CANDIDATES, every_word=False, head_only=True,
                   languages=languages)
    return _good(analyzer, terms, rows, limit)


def _searched_languages(language: str | None) -> tuple[str, ...]:
    """The article languages searched: the one asked for when the FAQ knows it, else all."""
    return (language,) if language in _CONFIGS else tuple(_CONFIGS)


def suggest(session: Session, text_: str, *, visibilities: Sequence[str], language: str,
            limit: int = 3) -> list[Hit]:
    """For the acknowledgment: one query, any word, articles in the ticket's `language`,
    good matches only; [] when nothing fits (or the FAQ is empty)."""
    if limit <= 0 or session.execute(_ANY_ARTICLE).first() is None:
        return []      # an empty FAQ: one indexed probe instead of analysis and ranking
    analyzer = Analyzer()
    languages = _searched_languages(language)
    terms = analyzer.query_terms(text_[:2000], SUGGEST_WORDS, languages)
    if not terms:
        return []
    rows = _ranked(session, terms, visibilities, CANDIDATES, every_word=False, head_only=True,
                   languages=languages)
    return _good(analyzer, terms, rows, limit)


def _good(analyzer: Analyzer, terms: QueryTerms, rows: Sequence[Any], limit: int) -> list[Hit]:
    """The good matches among the candidates, most query words first (title and keywords,
    then anywhere), the database's rank breaking ties."""
    needed = min(2, len(terms.words))
    good: list[tuple[int, Any]] = []
    for row in rows:
        head = analyzer.matched_terms(terms, f"{row.title}\n{row.keywords}", row.language)
        anywhere = set(head)
        if head and len(head) < needed:    # the text must have the other word
            anywhere |= analyzer.matched_terms(terms, row.body_text[:SNIPPET_SOURCE_CHARS],
                                               row.language)
        if head and len(anywhere) >= needed:
            good.append((len(head), row))
    good.sort(key=lambda pair: -pair[0])          # stable: the database's rank breaks ties
    return [_hit(analyzer, terms, row) for _, row in good[:limit]]


def _ranked(session: Session, terms: QueryTerms, visibilities: Sequence[str], limit: int,
            *, every_word: bool, head_only: bool = False,
            languages: tuple[str, ...] = ("de", "en")) -> Sequence[Any]:
    """One ranked query. `head_only`: in the title and keywords index (`faq_head_fts`,
    `head_vector`): a good match needs a query word there anyway, and a word common in
    the articles' texts then costs nothing."""
    sqlite = session.get_bind().dialect.name == "sqlite"
    if sqlite:
        joiner = " AND " if every_word else " OR "
        match = joiner.join("(" + " OR ".join(f'"{s}"' for s in sorted(stems)) + ")"
                            for stems in terms.stems)
        statement = _STATEMENTS["sqlite", head_only, ()]
    else:
        joiner = " & " if every_word else " | "
        match = joiner.join("(" + " | ".join(terms.all_words(i)) + ")"
                            for i in range(len(terms.words)))
        statement = _STATEMENTS["postgresql", head_only, languages]
        before = session.execute(_INDEX_PLAN).one()
    rows = session.execute(statement, {"match": match, "visibilities": list(visibilities),
                                       "languages": list(languages), "limit": limit}).all()
    if not sqlite:      # (a failed statement ends the transaction, and set_config with it)
        session.execute(_RESTORE_PLAN, {"seqscan": before.seqscan,
                                        "plan_cache": before.plan_cache})
    return rows


def _hit(analyzer: Analyzer, terms: QueryTerms, row: Any) -> Hit:
    body = row.body_text[:SNIPPET_SOURCE_CHARS]
    head = analyzer.matched_terms(terms, f"{row.title}\n{row.keywords}", row.language)
    found = analyzer.matches(terms, body, row.language)
    anywhere = head | {index for _, _, index in found}
    snippet = analyzer.snippet(terms, body, row.language, found=found)
    return Hit(id=row.id, key=row.key, title=row.title, language=row.language,
               visibility=row.visibility, category=row.category, snippet=snippet,
               title_terms=len(head), matched_terms=len(anywhere))


# -- typo tolerance -----------------------------------------------------------------------

def max_distance(word: str) -> int:
    return 1 if len(word) <= 5 else 2


def corrections(session: Session, words: Sequence[str],
                analyzer: Analyzer) -> dict[str, tuple[str, ...]]:
    """Vocabulary words close to each query word that is not in the vocabulary. A word with
    a close vocabulary word of the same stem ("Druckers": "drucker") is a word form the
    stemmed search finds anyway, not a typo: it gets no alternatives."""
    candidates = [w for w in words if len(w) >= 4 and not w.isdigit()]
    if not candidates:
        return {}
    term = FaqTerm.__table__  # type: ignore[attr-defined]
    known = set(session.execute(select(term.c.word).where(term.c.word.in_(candidates)))
                .scalars())
    found: dict[str, tuple[str, ...]] = {}
    sqlite = session.get_bind().dialect.name == "sqlite"
    for word in [w for w in candidates if w not in known][:MAX_CORRECTED_WORDS]:
        if sqlite:
            grams = sorted({word[i:i + 3] for i in range(len(word) - 2)})
            rows = session.execute(_SQLITE_SIMILAR,
                                   {"match": " OR ".join(f'"{g}"' for g in grams)}).all()
        else:
            rows = session.execute(_POSTGRES_SIMILAR, {"word": word}).all()
        close = [(OSA.distance(word, row.word), -row.articles, row.word) for row in rows]
        close = [c for c in close if c[0] <= max_distance(word)]
        stems = analyzer.stems(word)
        if any(analyzer.stems(w) & stems for _, _, w in close):
            continue
        if close:
            found[word] = tuple(w for _, _, w in sorted(close))[:MAX_ALTERNATIVES]
    return found
