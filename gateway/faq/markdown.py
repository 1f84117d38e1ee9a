"""FAQ article bodies: Markdown in, sanitized HTML and plain text out.

Markdown is parsed by markdown-it-py (CommonMark, plus tables and strikethrough) with raw
HTML turned off, so `<script>` in a file is shown as text; markdown-it also refuses
`javascript:`, `vbscript:` and `data:` link targets. The HTML it makes is then cleaned by nh3
(Ammonia) with an allow-list: no script, no event handler attributes, no `style`, links only
to http(s) and mailto, `rel="noopener noreferrer nofollow"` on every link. The same
`clean_html` runs again when a page shows an article (a row written by other means cannot
smuggle markup in).

The plain text (what search indexes and snippets are cut from) is the text of that HTML,
one block per line.

Pure; never raises for any input string.
"""

from __future__ import annotations

import html
import re

import nh3
from markdown_it import MarkdownIt

ALLOWED_TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5",
    "h6", "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "s", "strong", "sub", "sup",
    "table", "tbody", "td", "th", "thead", "tr", "ul",
})
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"},
                      "ol": {"start"}, "th": {"align"}, "td": {"align"}}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
_BLOCK_END = re.compile(r"</(p|h[1-6]|li|tr|pre|blockquote|table)>|<br\s*/?>|<hr\s*/?>")


def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False,
                                     "typographer": False}).enable(["table", "strikethrough"])


def clean_html(fragment: str) -> str:
    """An HTML fragment with everything but the allow-list removed."""
    return nh3.clean(fragment, tags=set(ALLOWED_TAGS), attributes=ALLOWED_ATTRIBUTES,
                     url_schemes=set(URL_SCHEMES), link_rel="noopener noreferrer nofollow",
                     strip_comments=True)


def render_markdown(source: str) -> str:
    """Markdown to sanitized HTML."""
    return clean_html(_parser().render(source))


def html_to_text(fragment: str) -> str:
    """The text of sanitized HTML: one line per block, entities decoded, blank lines
    collapsed."""
    marked = _BLOCK_END.sub(lambda m: m.group(0) + "\n", fragment)
    stripped = html.unescape(nh3.clean(marked, tags=set()))
    lines = [" ".join(line.split()) for line in stripped.splitlines()]
    return "\n".join(line for line in lines if line)


def markdown_to_text(source: str) -> str:
    return html_to_text(render_markdown(source))
