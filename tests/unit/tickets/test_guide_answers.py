"""Reading guide answers out of a customer's reply (issue #16 item 1), over crafted bodies in
German and English."""

from __future__ import annotations

import pytest

from gateway.config.settings import GuideQuestion
from gateway.tickets.guide_answers import GuideReply, own_lines, parse_guide_reply

QUESTIONS = [
    GuideQuestion.model_validate({"key": "system", "label": {"de": "Betroffenes System",
                                                             "en": "Affected system"},
                                  "required": True}),
    GuideQuestion.model_validate({"key": "reason", "label": {"de": "Grund", "en": "Reason"},
                                  "required": True}),
    GuideQuestion.model_validate({"key": "room", "label": {"de": "Raum", "en": "Room"}}),
]
ASKED = ("system", "reason")


def parse(body: str, quote_start: int | None = None,
          asked: tuple[str, ...] = ASKED) -> GuideReply:
    return parse_guide_reply(own_lines(body, quote_start), QUESTIONS, asked)


@pytest.mark.parametrize("body", [
    "Hallo,\n\nGrund: Umzug ins 3. OG\nBetroffenes System: HP 4250\n\nGruß Max",
    "Hello,\nreason: Moving to the 3rd floor\n  AFFECTED   SYSTEM :  HP 4250\n",
    "- Grund: Umzug ins 3. OG\n* Affected system: HP 4250\n",
    "1. Betroffenes System: HP 4250\n2. Reason: Umzug ins 3. OG\n",
])
def test_label_lines_in_either_language(body: str) -> None:
    reply = parse(body)
    assert dict(reply.answers).keys() == {"system", "reason"}
    assert dict(reply.answers)["system"] == "HP 4250"
    assert reply.corrections == frozenset()


def test_answers_come_in_guide_order_and_by_key() -> None:
    reply = parse("Room: 2.14\nsystem: HP\n")
    assert reply.answers == (("system", "HP"), ("room", "2.14"))


@pytest.mark.parametrize("body", [
    "1. HP 4250\n2. Umzug ins 3. OG\n",
    "1) HP 4250\n2) Umzug ins 3. OG\n\nViele Grüße\n",
    "Hello,\n\n 1.  HP 4250\n 2. Umzug ins 3. OG\n",
])
def test_numbered_answers_follow_the_order_the_acknowledgment_asked(body: str) -> None:
    assert parse(body).answers == (("system", "HP 4250"), ("reason", "Umzug ins 3. OG"))


def test_numbered_answers_refer_to_what_was_asked_not_to_the_guide() -> None:
    assert parse("1. Umzug\n", asked=("reason",)).answers == (("reason", "Umzug"),)


@pytest.mark.parametrize("body", [
    "Ich habe Folgendes versucht:\n1. neu gestartet\n2. Kabel geprüft\n3. Toner getauscht\n",
    "2. HP 4250\n",                                # not a list from 1
    "1. HP\n3. Umzug\n",                           # not 1, 2, …
])
def test_numbered_lines_that_are_not_answers(body: str) -> None:
    assert parse(body).answers == ()


def test_numbered_answers_need_an_acknowledgment_that_asked() -> None:
    assert parse("1. HP 4250\n", asked=()).answers == ()


def test_quoted_lines_never_count() -> None:
    body = "Siehe unten.\n> Grund: Umzug\n>Betroffenes System: HP\n"
    assert parse(body).answers == ()
    quoted_below = "Grund: Umzug\n\nAm Montag schrieb der Service Desk:\nBetroffenes System: X\n"
    assert parse(quoted_below, quote_start=quoted_below.index("Am Montag")).answers == (
        ("reason", "Umzug"),)


def test_empty_answers_and_unknown_labels_are_ignored() -> None:
    body = "Betroffenes System:\nGrund:   \nTicketnummer: 2026120610000001\nFarbe: blau\n"
    assert parse(body).answers == ()


def test_the_first_line_per_question_wins() -> None:
    assert parse("Grund: A\nReason: B\n").answers == (("reason", "A"),)


@pytest.mark.parametrize("marker", ["neu", "NEW", "korrigiert", "corrected", "Korrektur",
                                    "correction"])
def test_a_correction_says_so_after_the_label(marker: str) -> None:
    reply = parse(f"Betroffenes System ({marker}): HP 4350\nGrund: Umzug\n")
    assert reply.answers == (("system", "HP 4350"), ("reason", "Umzug"))
    assert reply.corrections == frozenset({"system"})


def test_never_raises_on_odd_text() -> None:
    for body in ["", ":", "::::", "1.", "1. ", "(neu): x", "\x00Grund\x00: y", "99. x\n" * 50]:
        parse(body)
