"""Words of FAQ articles and queries: tokens, Snowball stems, stop words, snippets.

In: text (an article's title, keywords and plain text; a search box query; a mail). Out:
words, stems, the significant terms of a query, which terms a text contains, a snippet of
the passage that matches best.

Pure, no I/O but reading the two stop word lists shipped beside this module (Snowball's, the
same PostgreSQL's `german` and `english` configurations drop, so both databases search the
same terms). An `Analyzer` holds Snowball stemmers (PyStemmer), which are not thread-safe:
build one per request or import (it costs a few microseconds).

Words are runs of letters and digits (`_` separates, as in SQLite's unicode61 tokenizer),
case-folded, 2 to 40 characters. FTS5's own stemmer (porter) is English-only, so for SQLite
the text is stemmed here, at index and at query time alike; a query word is looked up under
its German and its English stem, whatever the article's language.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources

import Stemmer

LANGUAGES = ("de", "en")
_SNOWBALL = {"de": "german", "en": "english"}
_TOKEN = re.compile(r"[^\W_]+")
MIN_WORD, MAX_WORD = 2, 40
MIN_VOCABULARY_WORD = 3
# words of mail etiquette that say nothing about the question (not in Snowball's lists)
_MAIL_WORDS = frozenset(word.casefold() for word in [
    "hallo", "hello", "hi", "hey", "liebe", "lieber", "sehr", "geehrte", "geehrter",
    "damen", "herren", "dear", "team", "servicedesk", "danke", "dank", "viele", "vielen",
    "besten", "herzlichen", "freundlichen", "gruß", "grüße", "gruss", "gruesse", "mfg",
    "lg", "vg", "thanks", "thank", "regards", "best", "kind", "cheers", "bitte", "please",
    "frage", "question", "problem", "help", "hilfe", "kann", "can", "mehr", "leider",
    "gern", "gerne", "seit", "schon"])
_START = 3                                   # letters compared before stemming a word
_PLAIN = str.maketrans({"ä": "a", "ö": "o", "ü": "u", "ß": "s"})
_SPELLINGS = {"a": ("a", "ä"), "o": ("o", "ö"), "u": ("u", "ü"), "s": ("s", "ß")}
_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+|\n+")


@cache
def stop_words(language: str) -> frozenset[str]:
    """Snowball's stop words for `de` or `en`."""
    name = f"stopwords_{_SNOWBALL[language]}.txt"
    lines = resources.files(__package__).joinpath(name).read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def all_stop_words() -> frozenset[str]:
    return stop_words("de") | stop_words("en")


def words(text: str) -> list[str]:
    """The words of `text`, case-folded, in order (repeats kept)."""
    return [w for w in _TOKEN.findall(text.casefold()) if MIN_WORD <= len(w) <= MAX_WORD]


def vocabulary(text: str) -> set[str]:
    """The words typo correction may choose from: 3+ characters, not only digits, not stop
    words."""
    stop = all_stop_words()
    return {w for w in words(text) if len(w) >= MIN_VOCABULARY_WORD and not w.isdigit()
            and w not in stop}


def guess_language(text: str) -> str | None:
    """`de` or `en` by counting stop words of each language (at least two), else None."""
    german, english = stop_words("de"), stop_words("en")
    found = words(text[:4000])
    counts = {"de": sum(1 for w in found if w in german and w not in english),
              "en": sum(1 for w in found if w in english and w not in german)}
    best = max(counts, key=lambda k: counts[k])
    if counts[best] < 2 or counts["de"] == counts["en"]:
        return None
    return best


@dataclass(frozen=True)
class QueryTerms:
    """The significant words of a query, in order, each once; `stems[i]` are word i's
    German and English stems (and any corrections' stems, see `with_alternatives`)."""

    words: tuple[str, ...]
    stems: tuple[frozenset[str], ...]
    alternatives: tuple[tuple[str, ...], ...]   # per word: corrected spellings also searched

    def __bool__(self) -> bool:
        return bool(self.words)

    def all_words(self, index: int) -> tuple[str, ...]:
        return (self.words[index], *self.alternatives[index])

    @cached_property
    def lookup(self) -> tuple[dict[str, int], dict[str, int]]:
        """word -> term index and stem -> term index (the first term wins)."""
        by_word: dict[str, int] = {}
        by_stem: dict[str, int] = {}
        for index in range(len(self.words)):
            for word in self.all_words(index):
                by_word.setdefault(word, index)
            for stem in self.stems[index]:
                by_stem.setdefault(stem, index)
        return by_word, by_stem

    @cached_property
    def stem_starts(self) -> frozenset[str]:
        """The first letters of every stem (umlauts plain): a word that begins otherwise
        cannot have one of these stems."""
        return frozenset(stem[:_START].translate(_PLAIN) for stems in self.stems
                         for stem in stems)

    @cached_property
    def word_starts(self) -> frozenset[str]:
        """Every beginning a word's first letters may have for `stem_starts` (each plain
        vowel or "s" also as its umlaut or "ß"): a set lookup per word instead of a
        translation."""
        found: set[str] = set()
        for start in self.stem_starts:
            forms = [""]
            for letter in start:
                forms = [f + variant for f in forms for variant in _SPELLINGS.get(letter, letter)]
            found.update(forms)
        return frozenset(found)


@dataclass(frozen=True)
class Snippet:
    """A passage of an article: (text, matched) pieces, so a page can mark the matches and a
    mail can show plain text."""

    pieces: tuple[tuple[str, bool], ...]

    @property
    def text(self) -> str:
        return "".join(piece for piece, _ in self.pieces)


class Analyzer:
    """Stems words in German and English. Not thread-safe (PyStemmer): one per request."""

    def __init__(self) -> None:
        self._stemmers = {lang: Stemmer.Stemmer(_SNOWBALL[lang]) for lang in LANGUAGES}

    def stem(self, word: str, language: str) -> str:
        return str(self._stemmers[language].stemWord(word))

    def stems(self, word: str, languages: Sequence[str] = LANGUAGES) -> frozenset[str]:
        """The word's stems in `languages` (both by default)."""
        return frozenset(self._stemmers[lang].stemWord(word) for lang in languages)

    def index_text(self, text: str, language: str) -> str:
        """The text as its stems in the article's language, space-separated (for FTS5)."""
        return " ".join(self._stemmers[language].stemWords(words(text)))

    def query_terms(self, text: str, limit: int = 12,
                    languages: Sequence[str] = LANGUAGES) -> QueryTerms:
        """The first `limit` distinct significant words (no stop words, no mail etiquette),
        with their stems in `languages`."""
        stop = all_stop_words() | _MAIL_WORDS
        chosen: list[str] = []
        for word in words(text):
            if word not in stop and word not in chosen:
                chosen.append(word)
                if len(chosen) >= limit:
                    break
        return QueryTerms(tuple(chosen), tuple(self.stems(w, languages) for w in chosen),
                          tuple(() for _ in chosen))

    def with_alternatives(self, terms: QueryTerms,
                          alternatives: Mapping[str, Sequence[str]]) -> QueryTerms:
        """`terms` where each word in `alternatives` is also searched as those spellings."""
        extra = tuple(tuple(alternatives.get(w, ())) for w in terms.words)
        stems = tuple(frozenset(stems.union(*(self.stems(a) for a in more)))
                      for stems, more in zip(terms.stems, extra, strict=True))
        return QueryTerms(terms.words, stems, extra)

    def word_terms(self, terms: QueryTerms, text: str, language: str) -> dict[str, int]:
        """Each word of `text` (case-folded) that is a query term, by word or by stem, with
        the term's index. Snowball stems keep a word's beginning (after German umlauts
        become plain vowels), so only words that begin like a query stem are stemmed, in
        one call into Snowball."""
        by_word, by_stem = terms.lookup
        distinct = set(_TOKEN.findall(text.casefold()))
        found = {word: by_word[word] for word in by_word.keys() & distinct}
        starts = terms.word_starts
        candidates = [w for w in distinct if w[:_START] in starts]
        for word, stem in zip(candidates, self._stemmers[language].stemWords(candidates),
                              strict=True):
            if stem in by_stem and word not in found:
                found[word] = by_stem[stem]
        return found

    def matched_terms(self, terms: QueryTerms, text: str, language: str) -> set[int]:
        """Indexes of the terms that occur in `text` (by word or by stem)."""
        return set(self.word_terms(terms, text, language).values())

    def matches(self, terms: QueryTerms, text: str, language: str) -> list[tuple[int, int, int]]:
        """(start, end, term index) of every word of `text` that is a query term."""
        found = self.word_terms(terms, text, language)
        if not found:
            return []
        alternatives = "|".join(sorted(map(re.escape, found), key=len, reverse=True))
        pattern = re.compile(rf"(?<![^\W_])(?:{alternatives})(?![^\W_])", re.IGNORECASE)
        return [(m.start(), m.end(), found[m.group().casefold()])
                for m in pattern.finditer(text) if m.group().casefold() in found]

    def snippet(self, terms: QueryTerms, text: str, language: str, width: int = 220,
                found: Sequence[tuple[int, int, int]] | None = None) -> Snippet:
        """The sentence with the most query terms (the first one if none has any), cut to
        about `width` characters around its first match, with the matching words marked.
        `found`: `matches(terms, text, language)` if the caller has it already."""
        sentences = _sentences(text)
        if not sentences:
            return Snippet(())
        if found is None:
            found = self.matches(terms, text, language) if terms else []
        best, best_count = sentences[0], 0
        for start, end in sentences:
            count = len({i for s, e, i in found if s >= start and e <= end})
            if count > best_count:
                best, best_count = (start, end), count
        start, end = best
        if end - start > width:
            first = next((s for s, e, _ in found if s >= start and e <= end), None)
            start = max(start, first - width // 3) if first is not None else start
            end = min(end, start + width)
            start, end = _word_bounds(text, start, end)
        else:
            while end - start < width // 2 and end < len(text):   # a short sentence: add more
                following = next(((s, e) for s, e in sentences if s >= end), None)
                if following is None or following[1] - start > width:
                    break
                end = following[1]
        pieces: list[tuple[str, bool]] = []
        position = start
        for s, e, _ in found:
            if s >= start and e <= end:
                pieces += [(text[position:s], False), (text[s:e], True)]
                position = e
        pieces.append((text[position:end], False))
        pieces = _joined(p for p in pieces if p[0])
        if start > 0:
            pieces.insert(0, ("… ", False))
        if end < len(text.rstrip()):
            pieces.append((" …", False))
        return Snippet(tuple(pieces))


def _sentences(text: str) -> list[tuple[int, int]]:
    spans, position = [], 0
    for separator in _SENTENCE_END.finditer(text):
        if text[position:separator.start()].strip():
            spans.append((position, separator.start()))
        position = separator.end()
    if text[position:].strip():
        spans.append((position, len(text.rstrip())))
    return spans


def _word_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    """Move a cut to the nearest spaces, so no word is cut in half."""
    if start > 0 and not text[start - 1].isspace():
        space = text.find(" ", start, end)
        start = space + 1 if space != -1 else start
    if end < len(text) and not text[end].isspace():
        space = text.rfind(" ", start, end)
        end = space if space > start else end
    return start, end


def _joined(pieces: Iterable[tuple[str, bool]]) -> list[tuple[str, bool]]:
    joined: list[tuple[str, bool]] = []
    for piece, marked in pieces:
        piece = " ".join(piece.split("\n")) if not marked else piece
        if joined and joined[-1][1] == marked and not marked:
            joined[-1] = (joined[-1][0] + piece, False)
        else:
            joined.append((piece, marked))
    return joined
