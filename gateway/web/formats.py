"""Numbers, sizes and times the way a German or an English reader writes them.

In: a value and the page's language ("de" or "en"; anything else is treated as English).
Out: text for a page or a message: "1,0 GB" and "06.12.2026 21:10" in German, "1.0 GB"
and "6 Dec 2026, 21:10" in English.

Guarantees: the digits come from Babel's CLDR data for de_DE and en_GB, so decimal
separators and digit grouping are the ones each language expects; nothing here raises for a
number or an aware datetime, and a naive datetime is read as UTC (what the database holds).
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

from babel.dates import format_datetime
from babel.numbers import format_decimal

_LOCALES = {"de": "de_DE", "en": "en_GB"}
# German: day.month.year, the way it is written in letters; English: the month as a word, so
# neither a British nor an American reader can take 06/12 the wrong way round
_TIME_PATTERNS = {"de": "dd.MM.yyyy HH:mm", "en": "d MMM yyyy, HH:mm"}
_UNITS = ("B", "KB", "MB", "GB")


def _locale(language: str) -> str:
    return _LOCALES.get(language, _LOCALES["en"])


def format_number(value: float, language: str) -> str:
    """A count or a whole number with the language's digit grouping (1.234 / 1,234)."""
    return format_decimal(value, format="#,##0", locale=_locale(language))


def format_size(size: int, language: str) -> str:
    """A size in bytes as people read it: whole B, KB and MB, GB with one decimal place
    (1 KB = 1024 B)."""
    locale = _locale(language)
    value = float(size)
    for unit in _UNITS[:-1]:
        if value < 1024:
            return f"{format_decimal(round(value), format='#,##0', locale=locale)} {unit}"
        value /= 1024
    return f"{format_decimal(value, format='#,##0.0', locale=locale)} {_UNITS[-1]}"


def format_time(value: datetime, language: str, zone: tzinfo) -> str:
    """A moment in the desk's time zone, to the minute."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    pattern = _TIME_PATTERNS.get(language, _TIME_PATTERNS["en"])
    return format_datetime(value, pattern, tzinfo=zone, locale=_locale(language))
