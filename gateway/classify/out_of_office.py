"""Out-of-office subjects: the prefixes mail programs write, and the words people use.

In: a decoded Subject. Out: "strong" (a prefix that only software writes, e.g. Outlook's
"Automatic reply:" / "Automatische Antwort:" in its UI languages, or an absence word directly
followed by a colon: "Abwesend:", "Out of Office:"), "weak" (absence words such
as "Out of Office" or "Urlaub", which people also type: only evidence together with a header
that software sets), or "". Pure; never raises.

A prefix counts only at the very start: "Re: Automatic reply: …" is a person answering one.
"""

from __future__ import annotations

import re

# Localised "Automatic reply" of Outlook/Exchange and the common autoresponders. Each must be
# followed by ":" or end the subject, so "Autoreply settings broken" stays a person's mail.
STRONG_PREFIXES = (
    "automatic reply", "auto-reply", "auto reply", "autoreply", "auto-response",
    "auto response", "autoresponse", "automatic response", "auto-antwort",
    "out of office autoreply", "out of office auto-reply", "out of office reply",
    "automatische antwort", "autom. antwort", "abwesenheitsnotiz", "abwesenheitsmeldung",
    "réponse automatique", "reponse automatique", "respuesta automática",
    "respuesta automatica", "risposta automatica", "automatisch antwoord",
    "resposta automática", "resposta automatica", "automatyczna odpowiedź",
    "odpowiedź automatyczna", "automatiskt svar", "automatisk svar", "automatisk besked",
    "automaattinen vastaus", "automatická odpověď", "automatikus válasz",
    "автоматический ответ", "otomatik yanıt", "自動回覆", "自动回复", "自動応答", "自動返信",
)
# Absence words that software writes as a prefix ("Abwesend: Drucker defekt", Exchange's and
# Zimbra's "Out of Office: ..."), but that people also use as a whole subject ("Abwesend",
# "Out of office hours support"): strong only when a colon follows directly.
STRONG_COLON_PREFIXES = (
    "abwesend", "abwesenheit", "out of office", "out of the office", "nicht im büro",
)
_PREFIX = r"^\s*(?:\[[^\]]*\]\s*)?"
_STRONG = re.compile(
    _PREFIX + r"(?:(?:" + "|".join(re.escape(p) for p in STRONG_PREFIXES)
    + r")\s*(?:[:：]|$)|(?:" + "|".join(re.escape(p) for p in STRONG_COLON_PREFIXES)
    + r")\s*[:：])", re.I)

_WEAK = re.compile(
    r"out of (?:the )?office|\bo\.?o\.?o\b|\booo\b|away from (?:the )?office|not in the office|"
    r"\bvacation\b|\bholiday|\bon leave\b|\babsen(?:ce|t)\b|abwesen|\burlaub|nicht im büro|"
    r"\bferien\b|\bcongés?\b|\babsence\b|\bvacaciones\b|\bferie\b|\bauto[- ]?repl", re.I)


def out_of_office_subject(subject: str) -> str:
    """"strong", "weak" or "" for how much the subject alone says "out-of-office"."""
    if not subject:
        return ""
    if _STRONG.search(subject):
        return "strong"
    return "weak" if _WEAK.search(subject) else ""
