"""Where the quoted history of a reply starts.

In: the readable text of a mail (`ParsedMessage.body_text`, newlines normalised to "\\n").
Out: the character offset of the first line that starts the quoted history, or None.

Markers, German and English (only the first one found counts):
- attribution lines: "Am 07.05.2012 08:10, schrieb Max:", "On Mon, 7 May 2012, Max wrote:",
  "Am Mo., 1. Dez. 2025 um 10:00 schrieb Jane <jane@example.com>:" (may be wrapped over up to
  three lines). One that starts with "Am"/"On" and holds a digit or an address (most clients
  write a date) counts on its own; one without either needs a ">" block below it: "On Mon,
  Jane wrote:" above "> ..." is history, "On Monday the technician wrote:" above prose is not;
- separators: "-----Ursprüngliche Nachricht-----", "-----Original Message-----",
  "-------- Original-Nachricht --------";
- Outlook header blocks: "Von:/Gesendet:/An:/Betreff:" and "From:/Sent:/To:/Subject:";
- a block of lines starting with ">".

Guarantee: no exception for any text. When an attribution line or ">" block is followed by
new, unquoted text (bottom-posting, interleaved answers) there is no single place where the
history starts, and the answer is None: hiding the new text would be worse than showing the
quote.
"""

from __future__ import annotations

import re

_MAX_SCANNED_LINES = 5000
_ATTRIBUTION_WINDOW = 3

_ATTRIBUTION = re.compile(
    r"""^\s*(?:
        (?-i:Am|On)\s.{4,300}?\b(?:schrieb|wrote|hat\s.{1,200}?\sgeschrieben)\b.{0,120}:
      | .{0,200}\b(?:schrieb|wrote)\b.{0,120}:
    )\s*$""",
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)
_SEPARATOR = re.compile(
    r"^\s*-{2,}\s*(?:Original\s+Message|Ursprüngliche\s+Nachricht|Original-?Nachricht)"
    r"\s*-{2,}\s*$",
    re.IGNORECASE,
)
_MARKER_WORDS = ("schrieb", "wrote", "original", "ursprüngliche", "from:", "von:")
_HEADER_FIELD = re.compile(r"^\s*\**\s*([A-Za-zÄÖÜäöü-]{2,12})\s*:\**\s*\S", re.IGNORECASE)
_OUTLOOK_FROM = frozenset({"from", "von"})
_OUTLOOK_DATE = frozenset({"sent", "date", "gesendet", "datum"})
_OUTLOOK_SUBJECT = frozenset({"subject", "betreff"})
_OUTLOOK_OTHER = frozenset({"to", "an", "cc", "bcc", "importance", "wichtigkeit"})


def find_quote_start(text: str) -> int | None:
    """Offset of the first quote marker in `text`, or None (see the module docstring)."""
    if not _may_contain_marker(text):
        return None                           # most mails: a few substring scans, no loop
    lines = text.split("\n")[:_MAX_SCANNED_LINES]
    offset = 0
    for index, line in enumerate(lines):
        start, offset = offset, offset + len(line) + 1
        kind = _marker_kind(line)
        if kind is None:
            continue
        if kind == "separator" and _SEPARATOR.match(line):
            return start
        if kind == "header" and _is_outlook_header_block(lines, index):
            return start
        if kind == "attribution":
            end = _attribution_end(lines, index)
            if end is not None:
                return start if _only_quote_follows(lines, end + 1) else None
        if kind == "quote":
            return start if _is_quote_block(lines, index) else None
    return None


def _may_contain_marker(text: str) -> bool:
    if text.startswith(">") or "\n>" in text:
        return True
    lowered = text.lower()
    return any(word in lowered for word in _MARKER_WORDS)


def _marker_kind(line: str) -> str | None:
    """A cheap first look at a line: which marker could it start, if any."""
    if line.startswith(">"):
        return "quote"
    stripped = line.lstrip(" \t*")
    if not stripped:
        return None
    first = stripped[0]
    if first == "-":
        return "separator"
    if stripped.startswith(("Am ", "On ")) or (
            ":" in stripped and ("schrieb" in stripped or "wrote" in stripped)):
        return "attribution"
    if first in "FVfv" and ":" in stripped:
        return "header"
    return None


def _attribution_end(lines: list[str], index: int) -> int | None:
    """Index of the last line of an attribution starting at `index`, or None."""
    first = lines[index].lstrip()
    if not first.startswith(("Am ", "On ")) and ":" not in first:
        return None
    joined = ""
    for end in range(index, min(index + _ATTRIBUTION_WINDOW, len(lines))):
        if not lines[end].strip() or lines[end].startswith(">"):
            return None
        joined = f"{joined} {lines[end].strip()}" if joined else lines[end].strip()
        if len(joined) > 400:
            return None
        if joined.endswith(":") and _ATTRIBUTION.match(joined):
            am_on, dated = joined.startswith(("Am ", "On ")), _looks_dated(joined)
            if not (am_on or dated):
                return None         # "Our admin wrote:" is prose, even above a quote
            if not (am_on and dated) and not _quote_block_after(lines, end + 1):
                return None         # undated, or without "Am/On": only above a ">" block
            return end
    return None


def _quote_block_after(lines: list[str], start: int) -> bool:
    following = next((line for line in lines[start:] if line.strip()), "")
    return following.startswith(">")


def _looks_dated(attribution: str) -> bool:
    """Every client writes a date or an address into the attribution; prose rarely does."""
    return any(c.isdigit() for c in attribution) or "@" in attribution


def _is_outlook_header_block(lines: list[str], index: int) -> bool:
    """From/Von followed within six lines by a date field and a subject field."""
    if _field_name(lines[index]) not in _OUTLOOK_FROM:
        return False
    names = [_field_name(line) for line in lines[index:index + 7]]
    seen: set[str] = set()
    for name in names[1:]:
        if name is None:
            break
        seen.add(name)
    return bool(seen & _OUTLOOK_DATE) and bool(seen & _OUTLOOK_SUBJECT) and \
        seen <= (_OUTLOOK_DATE | _OUTLOOK_SUBJECT | _OUTLOOK_OTHER)


def _field_name(line: str) -> str | None:
    match = _HEADER_FIELD.match(line)
    return match.group(1).lower() if match else None


def _is_quote_block(lines: list[str], index: int) -> bool:
    """A ">" line starts the history when at least two quoted lines follow with no new text."""
    quoted = sum(1 for line in lines[index:] if line.startswith(">"))
    return quoted >= 2 and _only_quote_follows(lines, index)


def _only_quote_follows(lines: list[str], start: int) -> bool:
    """True when, from `start` on, the ">" quote is followed by nothing new: blank lines, a
    signature, or older history (another marker). Also true when no ">" quoting follows at
    all (Outlook-style history is not prefixed)."""
    first = next((i for i in range(start, len(lines)) if lines[i].strip()), None)
    if first is None or not lines[first].startswith(">"):
        return True
    for index in range(first, len(lines)):
        line = lines[index]
        if not line.strip() or line.startswith(">"):
            continue
        return line.rstrip() == "--" or _starts_history(lines, index)
    return True


def _starts_history(lines: list[str], index: int) -> bool:
    return bool(_SEPARATOR.match(lines[index])) or _is_outlook_header_block(lines, index) \
        or _attribution_end(lines, index) is not None
