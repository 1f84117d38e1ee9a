"""quote_start: where the quoted history of a reply starts, German and English clients.

Each case is (new text, history): the history must start exactly at len(new text). The
false-positive cases are ordinary text that mentions the same words.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.mail.parse import parse_message
from gateway.mail.quotes import find_quote_start

NEW = "Hallo zusammen,\n\ndas Problem ist gelöst.\n\nGruß\nMax\n\n"

HISTORIES = {
    "thunderbird-de": "Am 07.05.2012 08:10, schrieb Martin Edenhofer:\n> Hallo Max,\n> geht es?\n",
    "apple-de": "Am 07.05.2012 um 08:10 schrieb Martin <m@example.com>:\n\n> Hallo Max,\n"
                "> geht es?\n",
    "gmail-de-wrapped": "Am Mo., 7. Mai 2012 um 08:10 Uhr schrieb Martin Edenhofer <\n"
                        "martin@example.com>:\n\n> Hallo Max,\n> geht es?\n",
    "outlook-separator-de": "-----Ursprüngliche Nachricht-----\nVon: Martin\n"
                            "Gesendet: Montag, 7. Mai 2012 08:10\nAn: Max\nBetreff: Drucker\n\n"
                            "Hallo Max,\n",
    "gmx-de": "-------- Original-Nachricht --------\nBetreff: Drucker\nDatum: 07.05.2012\n\n"
              "Hallo Max,\n",
    "outlook-block-de": "Von: Martin Edenhofer <martin@example.com>\n"
                        "Gesendet: Montag, 7. Mai 2012 08:10\nAn: Max <max@example.com>\n"
                        "Cc: Team <team@example.com>\nBetreff: AW: Drucker\n\nHallo Max,\n",
    "gmail-en": "On Mon, May 7, 2012 at 8:10 AM, Martin Edenhofer <martin@example.com> wrote:\n"
                "> Hi Max,\n> does it work?\n",
    "gmail-en-wrapped": "On Mon, May 7, 2012 at 8:10 AM, Martin Edenhofer <\n"
                        "martin@example.com> wrote:\n\n> Hi Max,\n> does it work?\n",
    "apple-en": "On 7 May 2012, at 08:10, Martin <m@example.com> wrote:\n\n> Hi\n> Max\n",
    "outlook-separator-en": "-----Original Message-----\nFrom: Martin\n"
                            "Sent: Monday, May 07, 2012 8:10 AM\nTo: Max\nSubject: Printer\n\nHi\n",
    "outlook-express-en": "----- Original Message -----\nFrom: Martin\nTo: Max\n"
                          "Sent: Monday, May 07, 2012 8:10 AM\nSubject: Printer\n\nHi\n",
    "outlook-block-en": "From: Martin Edenhofer <martin@example.com>\n"
                        "Sent: Monday, May 7, 2012 8:10 AM\nTo: Max <max@example.com>\n"
                        "Subject: RE: Printer\n\nHi Max,\n",
    "outlook-block-html-bold": "**From:** Martin\n**Sent:** Monday, May 7, 2012 8:10 AM\n"
                               "**To:** Max\n**Subject:** RE: Printer\n\nHi Max,\n",
    "bare-quote-block": "> Hi Max,\n> does it work?\n>\n> Martin\n",
}


@pytest.mark.parametrize("style", sorted(HISTORIES))
def test_quote_start_at_the_first_marker(style: str) -> None:
    text = NEW + HISTORIES[style]
    assert find_quote_start(text) == len(NEW), text[len(NEW):][:40]


@pytest.mark.parametrize("style", sorted(HISTORIES))
def test_only_the_first_marker_counts(style: str) -> None:
    history = HISTORIES[style] + "\n" + HISTORIES["outlook-separator-en"]
    assert find_quote_start(NEW + history) == len(NEW)


def test_quote_start_through_parse_message_with_crlf() -> None:
    body = (NEW + HISTORIES["gmail-en"]).replace("\n", "\r\n").encode()
    raw = b"From: max@example.com\r\nSubject: Re: x\r\n\r\n" + body
    parsed = parse_message(raw, received=datetime(2026, 1, 1, tzinfo=UTC))
    assert parsed.quote_start == len(NEW)
    assert parsed.body_text[parsed.quote_start:].startswith("On Mon, May 7, 2012")


def test_quote_start_in_html_converted_text() -> None:
    html = ("<div>Thanks, fixed.</div><div class=\"gmail_quote\">On Mon, May 7, 2012 at 8:10 AM"
            ", Martin &lt;m@example.com&gt; wrote:<br><blockquote>Hi</blockquote></div>")
    raw = b"From: max@example.com\nContent-Type: text/html\n\n" + html.encode()
    parsed = parse_message(raw, received=datetime(2026, 1, 1, tzinfo=UTC))
    assert parsed.quote_start is not None
    assert parsed.body_text[:parsed.quote_start].strip() == "Thanks, fixed."


NOT_QUOTES = {
    "plain": "Hello,\n\nthe printer on floor 2 is broken.\n\nRegards\nMax\n",
    "on-without-date": "Hello,\n\nOn Monday the technician wrote:\nthe part is ordered.\n",
    "am-prose": "Am Montag hat der Techniker angerufen und schrieb danach: alles ok.\n",
    "from-in-prose": "From: the second floor\nTo: the first floor\nthe cable runs.\n",
    "single-quote-char": "Please check whether a > b holds.\n> only one line\n",
    "dashes": "Results\n-----------\nall green\n----- end -----\n",
    "wrote-no-colon": "She wrote back on 3 May 2024 and said yes.\n",
}


@pytest.mark.parametrize("case", sorted(NOT_QUOTES))
def test_no_false_positive_on_ordinary_text(case: str) -> None:
    assert find_quote_start(NOT_QUOTES[case]) is None


def test_bottom_posting_has_no_single_quote_start() -> None:
    """New text below the quote (bottom-posting, interleaved answers): marking the quote
    start would hide the answer, so there is none."""
    text = ("Am 07.05.2012 08:10, schrieb Martin:\n> Hallo Max,\n> geht es am Freitag?\n\n"
            "Ja, Freitag passt.\n")
    assert find_quote_start(text) is None
    interleaved = "> Geht Freitag?\nJa.\n> Und um 10?\nAuch.\n"
    assert find_quote_start(interleaved) is None


def test_signature_after_the_quote_is_still_history() -> None:
    text = "Done.\n\nOn 7 May 2012, Martin wrote:\n> fix it\n> please\n-- \nMartin\n"
    assert find_quote_start(text) == len("Done.\n\n")


def test_empty_and_huge_texts() -> None:
    assert find_quote_start("") is None
    assert find_quote_start("x\n" * 200_000) is None
