"""Address headers read without recursion, and the one-sender rule of issue #14: a From,
Sender or Reply-To that does not name exactly one address unambiguously credits nobody.

Each case is a header value a mail can carry; what `parse_address_list(...).single()`
makes of it is what routing, the customer match and the staff check see (through
`parse_message`, tested at the end)."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime

import pytest

from gateway.mail.addresses import parse_address_list
from gateway.mail.message import ParsedMessage
from gateway.mail.parse import parse_message

RECEIVED = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

ONE_ADDRESS = [       # (header value, the one address, its display name as written)
    ("max@acme.example", "max@acme.example", ""),
    ("<max@acme.example>", "max@acme.example", ""),
    ("Max Muster <max@acme.example>", "max@acme.example", "Max Muster"),
    ('"Muster, Max" <max@acme.example>', "max@acme.example", "Muster, Max"),
    ('"Doe \\"JD\\" John" <j@acme.example>', "j@acme.example", 'Doe "JD" John'),
    ("=?utf-8?q?M=C3=BCller?= <m@acme.example>", "m@acme.example", "=?utf-8?q?M=C3=BCller?="),
    ("Max M. Muster <max@acme.example>", "max@acme.example", "Max M. Muster"),
    ("max@acme.example (Max Muster)", "max@acme.example", "Max Muster"),
    ("max@acme.example (eve@evil.example)", "max@acme.example", "eve@evil.example"),
    ('"max@acme.example" <eve@evil.example>', "eve@evil.example", "max@acme.example"),
    ("John Doe john@acme.example", "john@acme.example", "John Doe"),   # no brackets
    ("max@acme.example <max@acme.example>", "max@acme.example", "max@acme.example"),
    ("team: max@acme.example;", "max@acme.example", ""),
    ("max@acme.example,", "max@acme.example", ""),
    ('"max.muster"@acme.example', '"max.muster"@acme.example', ""),
    ("<@relay.example:max@acme.example>", "max@acme.example", ""),        # obs-route
    ("max@[192.0.2.1]", "max@[192.0.2.1]", ""),
    ("(" * 5000 + "deep" + ")" * 5000 + " max@acme.example", "max@acme.example",
     "(" * 4999 + "deep" + ")" * 4999),
]

AMBIGUOUS = [         # (header value, why it names nobody)
    ('max.mustermann@acme.example"@evil.example', "an unclosed quote"),     # CVE-2023-27043
    ('"max.mustermann@acme.example"@evil.example', 'an "@" inside the quoted local part'),
    ("alice@acme.example)<bob@evil.example>", "an unbalanced ')'"),
    ("max@acme.example <eve@evil.example>", "'max@acme.example' before <eve@evil.example> "
                                            "is not a name"),
    ("max@acme.example@evil.example", 'several "@" in one address'),
    ("Max <max@acme.example>, Eve <eve@evil.example>", "2 addresses"),
    ("max@acme.example eve@evil.example", 'several "@" in one address'),
    ("Max, Muster max@acme.example", "text that is not an address"),
    ("max <a@b> x@acme.example", "text after \">\""),
    ("<max@acme.example> <eve@evil.example>", 'text after ">"'),
    ("Muster, Max <max@acme.example>", "text that is not an address"),
    ("<max@acme.example", 'an unclosed "<"'),
    ("max@acme.example (unclosed", "an unclosed comment"),
    ("<max@acme.example <eve@evil.example>>", 'a "<" inside <...>'),
    ("a: b: max@acme.example;;", "a group inside a group"),
    ("a:" * 3000 + "max@acme.example" + ";" * 3000, "a group inside a group"),
    ("team: max@acme.example", "an unclosed group"),
    ("<max muster@acme.example>", "a space inside the address"),
    ("max . muster@acme.example", "a space inside the address"),   # max.muster@ to others
    ("max@acme . example", "a space inside the address"),
    ("max@acme.example Max", "a space inside the address"),
    ("@acme.example", 'no local part before "@"'),
    ("max@", 'no domain after "@"'),
    ("<>", "no address"),
    ("undisclosed-recipients:;", "no address"),
    ("", "no address"),
]


@pytest.mark.parametrize(("value", "address", "display"), ONE_ADDRESS)
def test_one_unambiguous_address(value: str, address: str, display: str) -> None:
    read = parse_address_list(value)
    single = read.single()
    assert single is not None, read.why_not_single()
    assert (single.address, single.display) == (address, display)
    assert read.why_not_single() == ""


@pytest.mark.parametrize(("value", "why"), AMBIGUOUS)
def test_a_header_that_names_no_one_address_unambiguously(value: str, why: str) -> None:
    read = parse_address_list(value)
    assert read.single() is None
    assert read.why_not_single() == why


def test_address_lists_are_read_as_well_as_possible() -> None:
    read = parse_address_list('xxx, John Doe john@acme.example, "Doe, Jane" <jane@acme.example>'
                              ", undisclosed-recipients:;, <>, team: a@acme.example, "
                              "b@acme.example;")
    assert [(m.display, m.address) for m in read.mailboxes] == [
        ("", "xxx"), ("John Doe", "john@acme.example"), ("Doe, Jane", "jane@acme.example"),
        ("", ""), ("", "a@acme.example"), ("", "b@acme.example")]
    assert read.problem == "text that is not an address"


def test_hostile_headers_are_read_in_linear_time_without_recursion() -> None:
    """The stdlib's getaddresses recurses once per nested comment or group: these raised
    RecursionError. Read here in a thread with a small stack and the default recursion
    limit, each within a generous time (quadratic reading would take minutes)."""
    n = 40_000      # quadratic reading would take 10^9 steps at least
    values = ["(" * n + " max@acme.example", "(" * n + ")" * n, "a:" * n + "x@y" + ";" * n,
              "<" * n, '"' * (n + 1), "\\" * n, "a@" * n, ", " * n, "<a@b>" * (n // 4)]
    results: list[object] = []

    def read_all() -> None:
        results.extend(parse_address_list(v) for v in values)

    threading.stack_size(256 * 1024)
    try:
        thread = threading.Thread(target=read_all, daemon=True)
        thread.start()
    finally:
        threading.stack_size(0)
    thread.join(30)
    assert not thread.is_alive() and len(results) == len(values)


def test_random_header_values_never_raise() -> None:
    pieces = ["a", "@", "<", ">", "(", ")", '"', "\\", ",", ":", ";", " ", ".", "[", "]",
              "=?utf-8?q?x?=", "max@acme.example", "\udcff", "ü"]
    rng = random.Random(14)
    for _ in range(5000):
        value = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        read = parse_address_list(value)
        single = read.single()
        assert single is None or (single.address.count("@") == 1 and not read.problem)


# ---------------------------------------------------------------- through parse_message


def parse(headers: str) -> ParsedMessage:
    raw = (headers + "\nTo: incident@support.example.com\nSubject: Drucker\n\nHallo\n").encode()
    return parse_message(raw, received=RECEIVED)


def test_an_ambiguous_from_is_no_sender_and_says_why() -> None:
    parsed = parse('From: max.mustermann@acme.example"@evil.example')
    assert parsed.from_ is None
    assert ("address: From is not one unambiguous address (an unclosed quote); taken as no "
            "From") in parsed.defects
    assert parsed.header("from") == 'max.mustermann@acme.example"@evil.example'


def test_two_from_fields_are_no_sender() -> None:
    parsed = parse("From: max@acme.example\nFrom: eve@evil.example")
    assert parsed.from_ is None
    assert "address: 2 From fields; taken as no From" in parsed.defects


def test_reply_to_and_sender_follow_the_same_rule() -> None:
    parsed = parse("From: Max <max@acme.example>\nSender: a@acme.example, b@acme.example\n"
                   "Reply-To: max@acme.example <eve@evil.example>")
    assert parsed.from_ is not None and parsed.from_.address == "max@acme.example"
    assert parsed.sender is None and parsed.reply_to == ()
    good = parse("From: Max <max@acme.example>\nReply-To: Max Privat <max@home.example>")
    assert [a.address for a in good.reply_to] == ["max@home.example"]


def test_a_bounce_from_without_any_address_is_kept_as_written() -> None:
    parsed = parse("From: Mail Delivery Subsystem <MAILER-DAEMON>")
    assert parsed.from_ is not None
    assert (parsed.from_.name, parsed.from_.address) == (
        "Mail Delivery Subsystem", "MAILER-DAEMON")


def test_address_headers_nested_thousands_deep_parse_at_once() -> None:
    """A "stack overflow" mail of MIME test suites: From and To of thousands of nested
    comments and groups. It used to raise RecursionError (a 2,700-line traceback per
    attempt, quarantine after ~5 minutes)."""
    deep_comment = "(" * 5000 + "x" + ")" * 5000
    parsed = parse(f"From: {deep_comment} max@acme.example\nCc: {'g:' * 5000}a@b{';' * 5000}")
    assert parsed.from_ is not None and parsed.from_.address == "max@acme.example"
    assert parsed.from_.name == "(" * 256               # the comment, cut: it is only shown
    assert [a.address for a in parsed.cc] == ["a@b"]
    groups = parse(f"From: {'g:' * 5000}max@acme.example{';' * 5000}")
    assert groups.from_ is None
    assert ("address: From is not one unambiguous address (a group inside a group); taken "
            "as no From") in groups.defects
