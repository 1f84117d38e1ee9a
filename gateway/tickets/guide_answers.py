"""Reading a customer's answers to a ticket's conversation guide out of their reply. Pure.

In: the new text of the reply (above the quoted history), the template's guide questions and
the keys the acknowledgment asked for, in its order. Out: a `GuideReply`: the answers found
(in guide order) and which of them the customer marked as a correction.

What counts as an answer:
- a line `Label: answer`, where Label is the question's label in either language or its key,
  case-insensitive, spaces collapsed, a leading `-`, `*` or `•` ignored
  (`Grund: Umzug`, `reason: moving`, `- Betroffenes System: HP 4250`);
- a numbered line `1. answer` or `1) answer` for the acknowledgment's first missing question,
  `2.` for its second, and so on, but only when the mail's numbered lines are exactly 1, 2,
  … k with k no more than the questions asked (a numbered list of steps in a longer mail is
  not taken for answers);
- `1. Label: answer` is the label's answer, whatever the number.

Never counted: quoted lines (`>`), lines with an empty answer (the acknowledgment's own
`Label:` lines, sent back unquoted), and for each question any line after its first.

A correction is said clearly by `(neu)`, `(new)`, `(korrigiert)`, `(corrected)`,
`(korrektur)` or `(correction)` after the label: `Betroffenes System (neu): HP 4250`.
Only such a line may replace an answer the ticket already has (`tickets/guide.py`), so a
reply that repeats the acknowledgment's "Ihre Angaben" without a quote marker changes
nothing. Never raises for content.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.config.settings import GuideQuestion

_NUMBERED = re.compile(r"^\s*(\d{1,2})\s*[.)]\s+(\S.*?)\s*$")
_CORRECTION = re.compile(r"^(.*?)\s*\(\s*(neu|new|korrigiert|corrected|korrektur|correction)\s*\)$")
_BULLETS = "*-•– "


@dataclass(frozen=True)
class GuideReply:
    answers: tuple[tuple[str, str], ...]    # (question key, answer), in guide order
    corrections: frozenset[str]             # keys whose line said "(neu)" / "(new)"


def own_lines(body: str, quote_start: int | None) -> list[str]:
    """The reply's own lines: above the quoted history, without `>` lines."""
    text = body[:quote_start] if quote_start else body
    return [line for line in text.splitlines() if not line.lstrip().startswith(">")]


def parse_guide_reply(lines: Sequence[str], questions: Sequence[GuideQuestion],
                      asked: Sequence[str]) -> GuideReply:
    """The answers in `lines` (see the module's docstring); `asked`: the keys the
    acknowledgment asked for, in its order (what numbered answers refer to)."""
    names = _names(questions)
    found: dict[str, str] = {}
    corrections: set[str] = set()
    numbered: list[tuple[int, str]] = []
    for line in lines:
        number = _NUMBERED.match(line)
        candidate = number.group(2) if number else line
        labelled = _labelled(candidate, names)
        if labelled is not None:
            key, value, correction = labelled
            if key not in found:
                found[key] = value
                if correction:
                    corrections.add(key)
        elif number:
            numbered.append((int(number.group(1)), number.group(2)))
    if numbered and [n for n, _ in numbered] == list(range(1, len(numbered) + 1)) \
            and len(numbered) <= len(asked):
        for (_, value), key in zip(numbered, asked, strict=False):
            found.setdefault(key, value)
    order = [q.key for q in questions]
    return GuideReply(tuple((k, found[k]) for k in order if k in found),
                      frozenset(corrections & set(found)))


def _names(questions: Sequence[GuideQuestion]) -> dict[str, str]:
    names: dict[str, str] = {}
    for question in questions:
        names[question.key.lower()] = question.key
        for label in question.label.values():
            names.setdefault(_normal(label), question.key)
    return names


def _normal(label: str) -> str:
    return " ".join(label.strip().lstrip(_BULLETS).lower().split())


def _labelled(line: str, names: dict[str, str]) -> tuple[str, str, bool] | None:
    """(key, answer, is a correction) for a `Label: answer` line of a known label."""
    label, colon, value = line.partition(":")
    if not colon or not value.strip():
        return None
    label = _normal(label)
    correction = _CORRECTION.match(label)
    if correction:
        label = correction.group(1).strip()
    key = names.get(label)
    return (key, value.strip(), correction is not None) if key else None
