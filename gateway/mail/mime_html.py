"""Mail HTML: made safe to show, or turned into plain text.

In: the decoded HTML of a mail body (any size, any nesting, hostile or broken). Out:
sanitized HTML (`sanitize_html`: no scripts, style sheets, event handlers or javascript:
URLs; `cid:` images kept, remote images removed and counted), readable text
(`html_to_text`, `strip_tags`), the charset a <meta> tag declares, and whether the nesting
is too deep to hand to an HTML5 tree builder.

Guarantee: nothing here raises for any input; when the third-party parser fails, the text
is read by removing tags instead.
"""

from __future__ import annotations

import copy
import html as htmllib
import re
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass

import nh3
from inscriptis import get_annotated_text, get_text  # type: ignore[import-untyped]
from inscriptis.css_profiles import CSS_PROFILES  # type: ignore[import-untyped]
from inscriptis.model.config import ParserConfig  # type: ignore[import-untyped]

_SAFE_TAGS = frozenset(nh3.ALLOWED_TAGS | {"font", "tfoot", "span", "div", "center"})
_SAFE_ATTRIBUTES: dict[str, set[str]] = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    "*": {"style", "align", "dir", "title", "lang"},
    "font": {"color", "face", "size"},
    "table": {"border", "cellpadding", "cellspacing", "width", "bgcolor", "align", "summary"},
    "td": {"width", "height", "valign", "bgcolor", "colspan", "rowspan", "align", "nowrap"},
    "th": {"width", "height", "valign", "bgcolor", "colspan", "rowspan", "align", "scope"},
    "img": {"src", "alt", "width", "height", "align", "border", "title"},
    "a": {"href", "hreflang", "title"},
}
# Layout and typography only: no url(), no positioning that could overlay our own page.
_SAFE_STYLE = frozenset({
    "color", "background-color", "font", "font-family", "font-size", "font-style",
    "font-weight", "text-align", "text-decoration", "text-indent", "text-transform",
    "line-height", "letter-spacing", "white-space", "vertical-align", "margin",
    "margin-top", "margin-bottom", "margin-left", "margin-right", "padding", "padding-top",
    "padding-bottom", "padding-left", "padding-right", "border", "border-top",
    "border-bottom", "border-left", "border-right", "border-color", "border-style",
    "border-width", "border-collapse", "width", "height", "max-width", "min-width",
    "list-style-type", "direction",
})
# cid: is how a mail's HTML shows its own inline images (RFC 2392).
_SAFE_SCHEMES = frozenset({"http", "https", "mailto", "tel", "cid"})


@dataclass(frozen=True)
class SanitizedHtml:
    html: str
    remote_images: int          # <img> with an http(s) source, removed (tracking pixels)


def sanitize_html(html: str) -> SanitizedHtml:
    """Safe HTML for display: no scripts, styles sheets, event handlers or javascript: URLs;
    `cid:` image sources are kept so inline images can be shown. Every other image is
    removed: a remote one (http, https, //) would tell the sender when and where the mail
    is read (a tracking pixel) and is counted, so the reader can be told; a relative one
    points nowhere."""
    remote = 0

    def only_cid_images(tag: str, attribute: str, value: str) -> str | None:
        nonlocal remote
        if tag != "img" or attribute != "src":
            return value
        source = value.strip().lower()
        if source.startswith("cid:"):
            return value
        remote += source.startswith(("http:", "https:", "//"))
        return None

    cleaned = _clean(html, only_cid_images)
    if _IMAGE_WITHOUT_SOURCE.search(cleaned):   # cut the emptied <img>s, then clean again:
        cleaned = _clean(_IMAGE_WITHOUT_SOURCE.sub("", cleaned), None)   # the cut is text
    return SanitizedHtml(cleaned, remote)


# nh3 writes each tag as `<img attr="value">`; an <img> left without its src attribute
_IMAGE_WITHOUT_SOURCE = re.compile(r'<img(?:\s+(?!src=)[a-z-]+="[^"]*")*\s*/?>')


def _clean(html: str, attribute_filter: Callable[[str, str, str], str | None] | None) -> str:
    return nh3.clean(
        html, tags=set(_SAFE_TAGS), clean_content_tags={"script", "style", "title", "head"},
        attributes=_SAFE_ATTRIBUTES, url_schemes=set(_SAFE_SCHEMES),
        filter_style_properties=set(_SAFE_STYLE), link_rel="noopener noreferrer nofollow",
        strip_comments=True, attribute_filter=attribute_filter)


def _text_profile() -> dict[str, object]:
    """inscriptis' relaxed profile, without the indentation it gives every <div> (mail HTML
    nests divs deeply, which would indent ordinary text)."""
    profile = dict(CSS_PROFILES["relaxed"])
    div = copy.copy(profile["div"])
    div.padding_inline = 0
    profile["div"] = div
    return profile


_TEXT_CONFIG = ParserConfig(css=_text_profile())
# the same, telling where each <blockquote> is, so its lines can be marked with ">"
_QUOTE_CONFIG = ParserConfig(css=_text_profile(), annotation_rules={"blockquote": ["quote"]})
_BLANK_RUNS = re.compile(r"\n{3,}")
_META_CHARSET = re.compile(rb"<meta[^>]{0,200}?charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]{1,40})",
                           re.IGNORECASE)


# Elements that never nest deeply: void elements, and those the HTML parser closes itself.
_FLAT_ELEMENTS = frozenset({
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
    "source", "track", "wbr", "p", "li", "dt", "dd", "tr", "td", "th", "option", "!doctype",
})
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]*)[^>]*?(/?)>")
_ANY_TAG = re.compile(r"<[^>]*>")
MAX_HTML_DEPTH = 1000


def _tags_end(html: str) -> int:
    """Where the last ">" ends (0 without one). No tag can end after it, so `_TAG` and
    `_ANY_TAG` run only up to here: past the last ">" every "<" would scan to the end of the
    text and fail, which is quadratic ("<a" * 20,000 took 8 s). Up to it, a try at a "<"
    fails at once or matches at the next ">", so the scan is linear and finds the same tags."""
    return html.rfind(">") + 1


def html_too_deep(html: str, limit: int = MAX_HTML_DEPTH) -> bool:
    """True when elements nest deeper than `limit`. The HTML5 tree builder behind nh3 spends
    quadratic time on deep nesting (100,000 nested <div>s: about 20 s), so such HTML is not
    handed to it. Cheap: mails with fewer tags than `limit` are not scanned at all."""
    if html.count("<") <= limit:
        return False
    depth = 0
    for match in _TAG.finditer(html, 0, _tags_end(html)):
        if match.group(3) or match.group(2).lower() in _FLAT_ELEMENTS:
            continue
        if match.group(1):
            depth = max(0, depth - 1)
        else:
            depth += 1
            if depth > limit:
                return True
    return False


def strip_tags(html: str) -> str:
    """Text of HTML without a parser: tags removed, entities decoded, blank runs collapsed."""
    end = _tags_end(html)
    text = htmllib.unescape(_ANY_TAG.sub(" ", html[:end]) + html[end:]).replace("\xa0", " ")
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip("\n")


def tags_removed(html: str) -> str:
    """HTML with each tag replaced by a space and entities decoded, nothing else: what the
    readers of automatic mail search (`strip_tags` also tidies whitespace for people).
    [^<>] rather than [^>]: a run of "<" without ">" stays linear."""
    return htmllib.unescape(re.sub(r"<[^<>]*>", " ", html))


def html_to_text(html: str, *, mark_quotes: bool = False) -> str:
    """Readable plain text for an HTML body (for reading and quote detection, not display).
    `mark_quotes`: lines inside a <blockquote> begin with ">" (">>" two deep), as a mail
    program writes a quoted reply in plain text, so `quotes` finds the history of an HTML
    reply ("On Mon, Jane wrote:" above a blockquote) as it does in a plain one."""
    if not html.strip():
        return ""
    try:
        if mark_quotes:
            annotated = get_annotated_text(html, _QUOTE_CONFIG)
            text: str = _quote_marked(annotated["text"], annotated["label"])
        else:
            text = get_text(html, _TEXT_CONFIG)
    except Exception:  # a third-party parser on hostile input: fall back to stripping tags
        return strip_tags(html)
    lines = [line.rstrip() for line in text.replace("\xa0", " ").splitlines()]
    text = _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip("\n")
    # lxml drops what is nested deeper than it allows; do not lose the text with it.
    return text if text.strip() else strip_tags(html)


def _quote_marked(text: str, spans: list[tuple[int, int, str]]) -> str:
    """`text` with ">" (once per enclosing blockquote) before each line a quote span covers;
    a line belongs to a span when its first character does. Linear in lines and spans."""
    lines = text.split("\n")
    starts, offset = [], 0
    for line in lines:
        starts.append(offset + len(line) - len(line.lstrip()))
        offset += len(line) + 1
    change = [0] * (len(lines) + 1)
    for start, end, _ in spans:
        first, last = bisect_left(starts, start), bisect_left(starts, end)
        if first < last:
            change[first] += 1
            change[last] -= 1
    depth, marked = 0, []
    for index, line in enumerate(lines):
        depth += change[index]
        marked.append(f"{'>' * depth} {line.strip()}".rstrip() if depth else line)
    return "\n".join(marked)


def html_meta_charset(data: bytes) -> str | None:
    """The charset an HTML document declares in a <meta> tag (first 2 KB only)."""
    match = _META_CHARSET.search(data, 0, 2048)
    return match.group(1).decode("ascii") if match else None
