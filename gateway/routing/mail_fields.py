"""What routing reads from a mail's own text: the ticket title, a priority, the answers to a
template's conversation guide, and whether a reply says "not solved".

In: a `ParsedMessage` (and the template, for its guide). Out: plain values; `None` or empty
when the mail says nothing.

Guarantees: pure, and never raising for content. In the body only the new text counts
(above the quoted history): a quoted earlier mail never sets a priority, a guide answer or
"not solved".
"""

from __future__ import annotations

import re

from gateway.config.settings import TemplateSettings
from gateway.mail.message import ParsedMessage
from gateway.tickets.ticket import PRIORITY_NAMES

SUBJECT_TAG = re.compile(r"\[Ticket#(\d{16,20})\]", re.IGNORECASE)
_REPLY_PREFIX = re.compile(r"^\s*((re|aw|wg|fwd?|sv|vs|antw|rif|tr|r|ref)\s*(\[\d+\])?\s*:\s*)+",
                           re.IGNORECASE)


def clean_title(subject: str) -> str:
    """The subject as a ticket title: reply/forward prefixes and our tag removed."""
    title = SUBJECT_TAG.sub("", subject)
    title = _REPLY_PREFIX.sub("", title)
    return " ".join(title.split())


NOT_SOLVED = re.compile(
    r"\b(?:nicht|noch\s+nicht|nicht\s+wirklich)\s+gel(?:ö|oe|o)st\b|\bungel(?:ö|oe)st\b"
    r"|\bnot\s+(?:yet\s+|really\s+)?(?:solved|resolved)\b|\bunsolved\b|\bunresolved\b",
    re.IGNORECASE)


def says_not_solved(parsed: ParsedMessage) -> bool:
    """"not solved" in the new text of a reply: above the quoted history, never in a
    line quoted with ">" (our own answer explains the phrase)."""
    text = parsed.body_text[:parsed.quote_start] if parsed.quote_start else parsed.body_text
    own = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(">"))
    return NOT_SOLVED.search(own) is not None


_X_PRIORITY = {"1": 5, "2": 4, "3": 3, "4": 2, "5": 1}
_IMPORTANCE = {"high": 4, "normal": 3, "low": 2}
_BODY_PRIORITY = re.compile(r"^[ \t]*(?:priority|priorit[äa]t)[ \t]*:[ \t]*(.*?)[ \t]*$",
                            re.IGNORECASE | re.M)
_LEADING_DIGIT = re.compile(r"([1-5])\b")
# what a customer may write as the value besides a digit and `#priority`'s English names
# (`tickets.ticket.PRIORITY_NAMES`): the German names, and "urgent"/"dringend" as the top one
PRIORITY_WORDS = {**{name: number for number, name in PRIORITY_NAMES.items()},
                  "sehr niedrig": 1, "niedrig": 2, "hoch": 4, "sehr hoch": 5,
                  "urgent": 5, "dringend": 5}


def body_priority(text: str) -> int | None:
    """The first `Priority:`/`Priorität:` line whose whole value is a priority: a digit
    1-5 (what follows it does not matter, as before), or a name of `PRIORITY_WORDS`.
    Conservative on purpose: the words count only as such a line's value, never in the
    subject or in running text ("this is urgent" sets nothing)."""
    for match in _BODY_PRIORITY.finditer(text):
        value = " ".join(match.group(1).lower().split())
        digit = _LEADING_DIGIT.match(value)
        if digit:
            return int(digit.group(1))
        if value in PRIORITY_WORDS:
            return PRIORITY_WORDS[value]
    return None


def mail_priority(parsed: ParsedMessage) -> int | None:
    """A priority line in the body (`body_priority`), else X-Priority (RFC-less but
    universal), else Importance (RFC 2156); None: use the template's default. Routing uses
    it for a new ticket only: a reply never changes the priority."""
    text = parsed.body_text[:parsed.quote_start] if parsed.quote_start else parsed.body_text
    from_body = body_priority(text)
    if from_body is not None:
        return from_body
    x_priority = parsed.header("x-priority").strip()[:1]
    if x_priority in _X_PRIORITY and x_priority != "3":
        return _X_PRIORITY[x_priority]
    importance = parsed.header("importance").strip().lower()
    if importance in ("high", "low"):
        return _IMPORTANCE[importance]
    return None


def guide_answers(parsed: ParsedMessage, template: TemplateSettings | None
                  ) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """Answers to the template's conversation guide from `Label: answer` lines (either
    language's label, or the key, case-insensitive) above any quoted history, and the keys
    of required questions still unanswered."""
    if template is None or not template.guide:
        return (), ()
    names: dict[str, str] = {}
    for question in template.guide:
        names[question.key.lower()] = question.key
        for label in question.label.values():
            names[" ".join(label.lower().split())] = question.key
    text = parsed.body_text[:parsed.quote_start] if parsed.quote_start else parsed.body_text
    found: dict[str, str] = {}
    for line in text.splitlines():
        label, colon, value = line.partition(":")
        key = names.get(" ".join(label.strip().lstrip("*-• ").lower().split()))
        if colon and key and value.strip() and key not in found:
            found[key] = value.strip()
    ordered = tuple((q.key, found[q.key]) for q in template.guide if q.key in found)
    missing = tuple(q.key for q in template.guide if q.required and q.key not in found)
    return ordered, missing
