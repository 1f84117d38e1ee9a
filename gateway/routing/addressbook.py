"""Which of our addresses leads where: template addresses, routes, the FAQ address, queue
addresses and per-ticket reply addresses. Pure; built once from the settings.

Used twice: at SMTP `RCPT` (is this an address we serve?) and by routing (which template or
queue does this recipient open?). Addresses are compared by `address_key` (domain
case-insensitive, RFC 5321 §2.4); local parts of configured addresses are compared as written,
and also lower-cased as a fallback, because mail clients and MTAs change their case.

Plus-addressing: `support+incident@example.com` is `support@example.com` with the tag
`incident` (a template id picks that template); `support+r-TOKEN@…` is a ticket's customer
reply address and `support+s-TOKEN@…` its staff reply address, each with its own secret
token (see `reply_token_of`, `staff_token_of`): the customer never learns the staff one.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from enum import StrEnum

from gateway.config.settings import Settings
from gateway.mail.addresses import address_key

REPLY_TAG = re.compile(r"^r-([A-Za-z0-9_-]{16,64})$")
STAFF_TAG = re.compile(r"^s-([A-Za-z0-9_-]{16,64})$")


class Verdict(StrEnum):
    OK = "ok"
    RELAY = "relay"        # not one of our domains: 550 5.7.1
    UNKNOWN = "unknown"    # our domain, no such address: 550 5.1.1


@dataclass(frozen=True)
class Destination:
    """Where a recipient address leads. `rule` names how it was found (for the log)."""

    kind: str               # template | queue | faq
    target: str             # template id, queue id, or "" for faq
    rule: str               # template-address, plus-tag, route, route-pattern, queue-address,
                            # faq-address
    unknown_sender: str = "accept"   # accept | reject


def split_plus(address: str) -> tuple[str, str | None]:
    """`local+tag@domain` -> (`local@domain`, `tag`); no tag -> (address, None)."""
    local, at, domain = address.rpartition("@")
    if not at or "+" not in local:
        return address, None
    base, _, tag = local.partition("+")
    return f"{base}@{domain}", tag


def reply_token_of(address: str) -> str | None:
    """The ticket token of a reply address `local+r-TOKEN@domain`, else None."""
    _, tag = split_plus(address)
    match = REPLY_TAG.match(tag or "")
    return match.group(1) if match else None


def staff_token_of(address: str) -> str | None:
    """The ticket token of a staff reply address `local+s-TOKEN@domain`, else None."""
    _, tag = split_plus(address)
    match = STAFF_TAG.match(tag or "")
    return match.group(1) if match else None


class AddressBook:
    def __init__(self, settings: Settings) -> None:
        self.domains = {d.lower() for d in settings.inbound.domains}
        self._exact: dict[str, Destination] = {}
        self._patterns: list[tuple[str, Destination]] = []
        self._template_ids = {t.id for t in settings.template}
        for template in settings.template:
            for address in template.addresses:
                self._add(address, Destination("template", template.id, "template-address"))
        for route in settings.route:
            destination = (Destination("template", route.template, "route", route.unknown_sender)
                           if route.template else
                           Destination("queue", route.queue, "route", route.unknown_sender))
            if "*" in route.address or "?" in route.address:
                self._patterns.append((route.address.lower(), destination))
            else:
                self._add(route.address, destination)
        if settings.faq.address:
            self._add(settings.faq.address, Destination("faq", "", "faq-address"))
        from email.utils import parseaddr

        for queue in settings.queue:
            self._add(parseaddr(queue.from_)[1], Destination("queue", queue.id, "queue-address"))

    def _add(self, address: str, destination: Destination) -> None:
        self._exact.setdefault(address_key(address), destination)
        self._exact.setdefault(address_key(address).lower(), destination)

    def lookup(self, address: str) -> Destination | None:
        """The destination of a recipient, trying the address, then without its plus tag
        (a tag naming a template selects that template), then route patterns."""
        found = self._find_exact(address)
        if found:
            return found
        base, tag = split_plus(address)
        if tag is not None:
            found = self._find_exact(base)
            if found and tag in self._template_ids:
                return Destination("template", tag, "plus-tag", found.unknown_sender)
            if found:
                return found
        lowered = base.lower()
        for pattern, destination in self._patterns:
            if fnmatch.fnmatchcase(lowered, pattern):
                return Destination(destination.kind, destination.target, "route-pattern",
                                   destination.unknown_sender)
        return None

    def _find_exact(self, address: str) -> Destination | None:
        key = address_key(address)
        return self._exact.get(key) or self._exact.get(key.lower())

    def is_ours(self, address: str) -> bool:
        """An address of this gateway (loops: never answer mail from ourselves)."""
        return self._find_exact(split_plus(address)[0]) is not None

    def check_recipient(self, address: str) -> Verdict:
        """For SMTP RCPT. With no domains configured every recipient is accepted (and routed
        or rejected later): the listener then relies on the MTA in front of it."""
        if not self.domains:
            return Verdict.OK
        domain = address.rpartition("@")[2].lower()
        if domain not in self.domains:
            return Verdict.RELAY
        if self.lookup(address) is not None or reply_token_of(address) is not None \
                or staff_token_of(address) is not None:
            return Verdict.OK
        return Verdict.UNKNOWN
