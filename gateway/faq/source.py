"""FAQ files: Markdown with YAML front matter, read and checked for import, written for export.

A file looks like this (`category` is a path; `slug` defaults to the file name):

    ---
    title: Der Drucker druckt nur leere Seiten
    category: Arbeitsplatz/Drucker
    keywords: [Drucker, Toner, leere Seiten]
    language: de               # de | en (default de)
    visibility: public         # public | customers (default public)
    slug: drucker-leere-seiten
    ---
    Markdown text ...

In: a file or a folder (searched recursively for `*.md`). Out: `ArticleSource`s, or
`InvalidInput` listing *every* bad file by its path and problem (unknown keys too: a typo
must not pass silently) -- then nothing is returned, so an import is all or nothing.
`write_article` writes the same format back, so `faq export` output imports unchanged.

Front matter is read with PyYAML's safe loader (no Python objects from a file); the split
on `---` lines is done here (python-frontmatter would add a dependency for these lines).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.errors import InvalidInput

LANGUAGES = ("de", "en")
VISIBILITIES = ("public", "customers")
KNOWN_KEYS = ("title", "category", "keywords", "language", "visibility", "slug")
MAX_FILE_BYTES = 1024 * 1024
MAX_TITLE = 300
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_TRANSLITERATE = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})


@dataclass(frozen=True)
class ArticleSource:
    """One article as a file describes it."""

    key: str                                   # the slug: stable, unique
    title: str
    category: tuple[str, ...]                  # names, root first
    keywords: tuple[str, ...]
    language: str
    visibility: str
    body: str                                  # Markdown
    origin: str = ""                           # the file it came from (for messages)

    @property
    def category_keys(self) -> tuple[str, ...]:
        """The slug path of each level: ("arbeitsplatz", "arbeitsplatz/drucker")."""
        slugs = [slugify(name) for name in self.category]
        return tuple("/".join(slugs[:i + 1]) for i in range(len(slugs)))


def slugify(text: str) -> str:
    """Lower-case ASCII words joined by '-' (German umlauts as ae, oe, ue, ss)."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_TRANSLITERATE)
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "-".join(re.findall(r"[a-z0-9]+", ascii_text))[:120]


def faq_files(path: Path) -> list[Path]:
    """The `*.md` files of a folder (recursively, sorted), or the one file given."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*.md") if p.is_file())
    return [path]


def read_sources(paths: Sequence[Path],
                 progress: Callable[[Iterable[Path]], Iterable[Path]] | None = None
                 ) -> list[ArticleSource]:
    """Every file read and checked; `InvalidInput` naming each bad file if any is bad."""
    problems: list[str] = []
    sources: list[ArticleSource] = []
    for path in (progress(paths) if progress else paths):
        try:
            sources.append(parse_file(path))
        except InvalidInput as exc:
            problems.append(str(exc))
    seen: dict[str, str] = {}
    for source in sources:
        if source.key in seen:
            problems.append(f"{source.origin}: slug {source.key!r} is also used by "
                            f"{seen[source.key]}")
        seen.setdefault(source.key, source.origin)
    if not paths:
        problems.append("no *.md files found")
    if problems:
        raise InvalidInput(f"{len(problems)} problem(s), nothing imported:\n  "
                           + "\n  ".join(problems))
    return sources


def parse_file(path: Path) -> ArticleSource:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise InvalidInput(f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return parse_text(text, origin=str(path), default_slug=slugify(path.stem))


def parse_text(text: str, *, origin: str, default_slug: str) -> ArticleSource:
    """One file's text; `InvalidInput` "ORIGIN: problem; problem" when anything is wrong."""
    meta, body = _split_front_matter(text, origin)
    problems = [f"unknown key {key!r} (known: {', '.join(KNOWN_KEYS)})"
                for key in meta if key not in KNOWN_KEYS]
    title = _string(meta, "title", problems, required=True)
    if len(title) > MAX_TITLE:
        problems.append(f"title: longer than {MAX_TITLE} characters")
    category = tuple(part.strip() for part in _string(meta, "category", problems,
                                                      required=True).split("/"))
    if any(not slugify(part) for part in category) and "category" in meta:
        problems.append("category: every level of the path needs a letter or digit")
    keywords = _keywords(meta.get("keywords"), problems)
    language = _string(meta, "language", problems) or "de"
    if language not in LANGUAGES:
        problems.append(f"language: {language!r} is not one of {', '.join(LANGUAGES)}")
    visibility = _string(meta, "visibility", problems) or "public"
    if visibility not in VISIBILITIES:
        problems.append(f"visibility: {visibility!r} is not one of {', '.join(VISIBILITIES)}")
    slug = _string(meta, "slug", problems) or default_slug
    if not _SLUG.match(slug) or len(slug) > 120:
        problems.append(f"slug: {slug!r} must be lower-case letters, digits and '-' "
                        "(at most 120)")
    if not body.strip():
        problems.append("the article has no text after the front matter")
    if problems:
        raise InvalidInput(f"{origin}: " + "; ".join(problems))
    return ArticleSource(key=slug, title=title, category=category, keywords=keywords,
                         language=language, visibility=visibility,
                         body=body.strip("\n") + "\n", origin=origin)


def _split_front_matter(text: str, origin: str) -> tuple[dict[str, Any], str]:
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise InvalidInput(f"{origin}: no front matter (the file must start with a '---' line)")
    end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() in ("---", "...")),
               None)
    if end is None:
        raise InvalidInput(f"{origin}: the front matter has no closing '---' line")
    try:
        meta = yaml.safe_load("".join(lines[1:end]))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 2})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidInput(f"{origin}: front matter is not valid YAML{where}: "
                           f"{problem}") from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise InvalidInput(f"{origin}: the front matter must be 'key: value' lines")
    return meta, "".join(lines[end + 1:])


def _string(meta: dict[str, Any], key: str, problems: list[str], *,
            required: bool = False) -> str:
    value = meta.get(key)
    if value is None:
        if required:
            problems.append(f"{key}: is required")
        return ""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        problems.append(f"{key}: must be text")
        return ""
    text = " ".join(str(value).split())
    if required and not text:
        problems.append(f"{key}: is empty")
    return text


def _keywords(value: Any, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, list):
        items = value
    else:
        problems.append("keywords: must be a list or comma-separated text")
        return ()
    if any(not isinstance(item, str | int | float) or isinstance(item, bool)
           for item in items):
        problems.append("keywords: every keyword must be text")
        return ()
    cleaned = (" ".join(str(item).replace(",", " ").split()) for item in items)
    return tuple(dict.fromkeys(k for k in cleaned if k))


# -- export -------------------------------------------------------------------------------

def render_file(source: ArticleSource) -> str:
    """The file text for an article (what `parse_text` reads back unchanged)."""
    meta = {"title": source.title, "category": "/".join(source.category),
            "keywords": list(source.keywords), "language": source.language,
            "visibility": source.visibility, "slug": source.key}
    front = yaml.safe_dump(meta, allow_unicode=True, sort_keys=False, width=1000)
    return f"---\n{front}---\n{source.body}"


def export_path(root: Path, source: ArticleSource) -> Path:
    """ROOT/<category slug path>/<slug>.md"""
    return root.joinpath(*source.category_keys[-1].split("/"), f"{source.key}.md")
