"""States, priorities, addresses and ticket numbers as users type them."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidInput
from gateway.mail.addresses import address_key, validate_address
from gateway.tickets.numbers import is_ticket_number
from gateway.tickets.ticket import State, parse_priority, parse_state, priority_label


@pytest.mark.parametrize("text, expected", [
    ("4", 4), ("high", 4), ("4 high", 4), (" Very Low ", 1), (5, 5), ("3 normal", 3)])
def test_priorities(text: str | int, expected: int) -> None:
    assert parse_priority(text) == expected


@pytest.mark.parametrize("text", ["0", "6", "urgent", "4 low", "", "3.0"])
def test_bad_priorities_say_what_is_allowed(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"1 \(very low\).*5 \(very high\)"):
        parse_priority(text)


def test_states() -> None:
    assert parse_state("Closed") is State.CLOSED
    with pytest.raises(InvalidInput, match="new, open, pending, closed"):
        parse_state("done")
    assert priority_label(2) == "2 low"


def test_address_key_folds_only_the_domain() -> None:
    # RFC 5321 2.4: the local part may be case-sensitive, the domain is not
    assert address_key("Erika.Musterfrau@ACME.Example") == "Erika.Musterfrau@acme.example"
    assert address_key("a@b.c") == address_key("a@B.C")
    assert address_key("A@b.c") != address_key("a@b.c")


@pytest.mark.parametrize("bad", ["", "plain", "a@", "@b.c", "a b@c.d", "Name <a@b.c>", "a@b"])
def test_invalid_addresses(bad: str) -> None:
    with pytest.raises(InvalidInput):
        validate_address(bad)


def test_ticket_number_shape() -> None:
    assert is_ticket_number("2026112710000017")
    assert is_ticket_number("20261127101000000")      # past 999,999 a day it grows
    assert not is_ticket_number("202611271000001")
    assert not is_ticket_number("Ticket#2026112710000017")
