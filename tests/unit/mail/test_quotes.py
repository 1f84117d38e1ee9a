"""quote_start: where the quoted history of a reply starts, German and English clients.

Each case is (new text, history): the history must start exactly at len(new text). The
false-positive cases are ordinary text that mentions the same words.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.mail.message import ParsedMessage
from gateway.mail.parse import parse_message
from gateway.mail.quotes import find_quote_start
from tests.conftest import CORPUS

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
    # attributions without a date or an address count when a ">" block follows them
    "undated-en": "On Mon, Jane wrote:\n> Hi Max,\n> does it work?\n",
    "undated-en-wrapped": "On Mon, Jane Doe from the\naccounting team wrote:\n\n> Hi Max,\n",
    "undated-de": "Am Montag schrieb Jane:\n> Hallo Max,\n> geht es?\n",
    "gmail-de-abbreviated": "Am Mo., 1. Dez. 2025 um 10:00 schrieb Jane <jane@example.com>:\n"
                            "> Hallo Max,\n> geht es?\n",
    "gmail-de-abbreviated-wrapped": "Am Mo., 1. Dez. 2025 um 10:00 Uhr schrieb Jane Doe\n"
                                    "<jane@example.com>:\n\n> Hallo Max,\n>\n> geht es?\n",
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
    "undated-above-prose": "Hello,\n\nOn Monday Jane wrote:\nplease call me.\n\nMax\n",
    "undated-am-above-prose": "Am Montag schrieb Jane:\nBitte zurückrufen.\n",
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


def test_undated_attribution_with_a_single_quoted_line() -> None:
    """One ">" line after an attribution is history (a lone ">" line alone is not)."""
    assert find_quote_start("Thanks.\n\nOn Mon, Jane wrote:\n> hi\n") == len("Thanks.\n\n")


def test_undated_attribution_above_a_quote_with_an_answer_below() -> None:
    text = "On Mon, Jane wrote:\n> Does Friday work?\n\nYes, Friday works.\n"
    assert find_quote_start(text) is None


def test_prose_above_a_quote_keeps_the_prose() -> None:
    """Without "On/Am", date or address the line is the customer's own: only the ">" block
    below it is history."""
    text = "Thanks.\n\nOur admin wrote:\n> restart it\n> twice\n"
    assert find_quote_start(text) == len("Thanks.\n\nOur admin wrote:\n")


def test_german_gmail_reply_is_shown_without_its_history() -> None:
    """A German Gmail reply as it arrives: the article keeps only the new text."""
    raw = ("From: Max <max@example.com>\r\nSubject: Re: Drucker\r\n"
           "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
           "Danke, läuft wieder.\r\n\r\nAm Mo., 1. Dez. 2025 um 10:00 Uhr schrieb Jane Doe <\r\n"
           "jane@example.com>:\r\n\r\n> Hallo Max,\r\n> bitte neu starten.\r\n").encode()
    parsed = parse_message(raw, received=datetime(2026, 1, 1, tzinfo=UTC))
    assert parsed.quote_start is not None
    assert parsed.body_text[:parsed.quote_start].strip() == "Danke, läuft wieder."


def test_real_bottom_posted_reply_from_the_corpus_keeps_its_answer() -> None:
    """zammad/mail005.box: a German Thunderbird reply written below "Am 07.05.2012 08:10,
    schrieb ...:" and its ">" block. No quote start, or the answer would be hidden."""
    raw = (CORPUS / "zammad" / "mail005.box").read_bytes()
    parsed = parse_message(raw, received=datetime(2026, 1, 1, tzinfo=UTC))
    assert parsed.body_text.lstrip().startswith("Am 07.05.2012 08:10, schrieb Martin")
    assert "Grüße aus Bonn" in parsed.body_text
    assert parsed.quote_start is None


def html_reply(html: str) -> ParsedMessage:
    raw = b"From: max@example.com\nContent-Type: text/html; charset=utf-8\n\n" + html.encode()
    return parse_message(raw, received=datetime(2026, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize("html", [
    '<div>Thanks, fixed.</div><div class="gmail_quote">On Mon, Jane wrote:<br>'
    "<blockquote>Hi<br>does it work?<blockquote>older</blockquote></blockquote></div>",
    '<div dir="ltr">Thanks, fixed.</div><br><div class="gmail_quote"><div dir="ltr" '
    'class="gmail_attr">Am Mo., 1. Dez. 2025 um 10:00 Uhr schrieb Jane Doe &lt;<a href="mai'
    'lto:jane@example.com">jane@example.com</a>&gt;:<br></div><blockquote class="gmail_quote"'
    '><div dir="ltr">Hallo Max,<div>bitte neu starten.</div></div></blockquote></div>',
    '<div>Thanks, fixed.</div><div><br><blockquote type="cite"><div>On 1 Dec 2025, at 10:00, '
    "Jane &lt;jane@example.com&gt; wrote:</div><br><div>Hi Max</div></blockquote></div>",
])
def test_html_replies_lose_their_history(html: str) -> None:
    """A <blockquote> reads as ">" lines (as mail programs write plain-text replies), so an
    HTML reply's history is found like a plain one's, undated attribution included."""
    parsed = html_reply(html)
    assert parsed.quote_start is not None, parsed.body_text
    assert parsed.body_text[:parsed.quote_start].strip() == "Thanks, fixed."


def test_an_html_answer_between_quotes_keeps_everything() -> None:
    parsed = html_reply("<div>Hi</div><blockquote>Does Friday work?</blockquote><div>Yes."
                        "</div><blockquote>And at 10?</blockquote><div>Also.</div>")
    assert parsed.body_text == "Hi\n> Does Friday work?\nYes.\n> And at 10?\nAlso."
    assert parsed.quote_start is None
