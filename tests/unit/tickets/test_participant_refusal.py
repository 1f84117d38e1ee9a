"""Who can never be a participant of a ticket (issue #16 item 2): our own addresses, staff,
role and automatic mailboxes, and what is no address at all."""

from __future__ import annotations

import pytest

from gateway.config.settings import Settings
from gateway.routing.addressbook import AddressBook
from gateway.tickets.participants import refusal

SETTINGS = Settings.model_validate({
    "inbound": {"domains": ["support.example.com"]},
    "outbound": {"from": "Service Desk <desk@mail.example.net>"},
    "queue": [{"id": "servicedesk", "from": "Service Desk <support@support.example.com>",
               "staff": ["anna.agent@example.com"]}],
    "staff": [{"email": "boss.agent@example.com"}],
    "template": [{"id": "incident", "group": "incident", "name": {"de": "Störung"},
                  "addresses": ["incident@other.example"], "queue": "servicedesk"}],
})
BOOK = AddressBook(SETTINGS)


@pytest.mark.parametrize("address, reason", [
    ("support@support.example.com", "one of our own addresses"),
    ("support+r-abcdefghijklmnop@support.example.com", "one of our own addresses"),
    ("anything@SUPPORT.example.com", "one of our own addresses"),
    ("incident@other.example", "one of our own addresses"),
    ("desk@mail.example.net", "one of our own addresses"),
    ("Anna.Agent@Example.com", "is a staff address"),
    ("boss.agent@example.com", "is a staff address"),
    ("noreply@acme.example", "role or automatic mailbox"),
    ("do-not-reply@acme.example", "role or automatic mailbox"),
    ("MAILER-DAEMON@acme.example", "role or automatic mailbox"),
    ("postmaster@acme.example", "role or automatic mailbox"),
    ("bounces+123@acme.example", "role or automatic mailbox"),
    ("list-owner@acme.example", "role or automatic mailbox"),
    ("not an address", "is not a mail address"),
    ("berta@localhost", "is not a mail address"),
])
def test_refused(address: str, reason: str) -> None:
    assert reason in (refusal(SETTINGS, BOOK, address) or "")


@pytest.mark.parametrize("address", ["berta.boss@acme.example", "info@acme.example",
                                     "max+tickets@acme.example"])
def test_people_are_welcome(address: str) -> None:
    assert refusal(SETTINGS, BOOK, address) is None
