"""The hand-written MIME serialisation of outbound mail, read back with the stdlib parser."""

from __future__ import annotations

import email
import email.policy
import quopri
import random
from datetime import UTC, datetime

import pytest

from gateway.outbound.headers import (
    NAME_LIMIT,
    MailIdentity,
    MessageHeaders,
    build_message,
    clean_header_text,
)
from gateway.outbound.mime_writer import encoded_text, fold, quoted_printable

NAMES = ["", "Max Mustermann", "Müller, Jürgen", 'Dr. "Evil" O\'Brien', "x" * 150,
         "Jörg " * 30, "a\\b", "日本語の名前です" * 5, "Service-Desk (1st level)"]
SUBJECTS = ["Drucker defekt", "Ünïcödé " * 40, "a" * 300, "=?utf-8?q?x?= literal",
            "Re: AW: [Ticket#2026112710000001] mehr"]
BODIES = ["Hallo\n\nZeile = 2  \n.\nFrom x\n" + "ä" * 500, "crlf\r\nlines\rcr only", "",
          "--=_tgw_ looks like a boundary\n" + "x" * 2000]


def crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")


def unfold(value: str) -> str:
    return value.replace("\r\n", "")


@pytest.mark.parametrize("value", ["short", "a " * 100, "<id@x> " * 30, "x" * 200,
                                   "word " + "y" * 100 + " tail"])
def test_fold_keeps_the_value_and_breaks_before_spaces(value: str) -> None:
    value = " ".join(value.split())
    written = fold("References", value)
    assert written.endswith("\r\n")
    assert unfold(written[:-2]) == f"References: {value}"
    for line in written[:-2].split("\r\n"):
        unbreakable = " " not in line.removeprefix("References: ").strip()
        assert len(line) <= 78 or unbreakable
        assert line.strip()                     # no whitespace-only continuation lines


def test_non_ascii_subject_becomes_short_encoded_words() -> None:
    subject = " ".join(["Störung im 3. OG"] * 20)
    written = encoded_text("Subject", subject)
    assert written.isascii()
    assert all(len(line) <= 78 for line in written.split("\r\n"))
    parsed = email.message_from_bytes(written.encode() + b"\r\n", policy=email.policy.default)
    assert parsed["Subject"] == subject


def test_quoted_printable_round_trips_with_crlf_only() -> None:
    text = "Grüße\nline = two  \r\nthree\r" + "ü" * 300
    encoded = quoted_printable(text)
    assert b"\n" not in encoded.replace(b"\r\n", b"")
    assert max(len(line) for line in encoded.split(b"\r\n")) <= 76
    assert quopri.decodestring(encoded).decode() == "Grüße\r\nline = two  \r\nthree\r\n" + "ü" * 300


def test_a_long_text_without_line_end_is_broken_with_crlf_too() -> None:
    encoded = quoted_printable("x" * 200)
    assert b"\n" not in encoded.replace(b"\r\n", b"")
    assert max(len(line) for line in encoded.split(b"\r\n")) <= 76
    assert quopri.decodestring(encoded) == b"x" * 200


def test_random_messages_parse_back_exactly_and_without_defects() -> None:
    for seed in range(200):
        choice = random.Random(seed).choice
        headers = MessageHeaders(
            sender=MailIdentity(choice(NAMES), "support@support.example.com"),
            to=[MailIdentity(choice(NAMES), f"user{i}@example.com") for i in range(3)],
            subject=choice(SUBJECTS), message_id="<ticketgw.1@support.example.com>",
            date=datetime(2026, 11, 30, 12, 0, tzinfo=UTC),
            reply_to=MailIdentity("", "support+r-abc@support.example.com"),
            in_reply_to="<question@customer.example>",
            references=tuple(f"<id{k}.{'x' * (k * 7)}@host>" for k in range(12)),
            auto_submitted="auto-replied")
        text, html = choice(BODIES), "<p>" + choice(BODIES) + "</p>"
        raw = build_message(headers, text, html)
        assert raw.isascii() and b"\n" not in raw.replace(b"\r\n", b"")
        assert max(len(line) for line in raw.split(b"\r\n")) <= 998
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert not message.defects and not any(p.defects for p in message.walk())
        assert [(a.display_name, a.addr_spec) for a in message["To"].addresses] == [
            (clean_header_text(t.name, NAME_LIMIT), t.address) for t in headers.to]
        assert message["References"].split() == [*headers.references]
        assert message["Auto-Submitted"] == "auto-replied"
        plain, rich = (part.get_content() for part in message.iter_parts())
        assert plain == crlf(text)
        assert rich == crlf(html)
