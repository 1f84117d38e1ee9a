"""Mail address helpers (pure).

RFC 5321 §2.4: the local part of an address may be case-sensitive, the domain is not. So an
address is matched by `address_key`: the local part exactly as written, the domain lower-cased.
`addresses_in` finds the bare addresses in header values (for matching, not display: the
parser's `MailAddress`es keep the display names); it never raises.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from email.utils import getaddresses, parseaddr

from gateway.errors import InvalidInput

ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


def address_key(address: str) -> str:
    """The form addresses are compared in: `Local@Example.COM` -> `Local@example.com`."""
    local, at, domain = address.strip().rpartition("@")
    if not at:
        return address.strip()
    return f"{local}@{domain.lower()}"


def validate_address(address: str) -> str:
    """A bare `local@domain` address, stripped; `InvalidInput` otherwise."""
    value = address.strip()
    _, parsed = parseaddr(value)
    local, at, domain = value.rpartition("@")
    if (parsed != value or not at or not local or not domain or "." not in domain
            or any(c.isspace() for c in value)):
        raise InvalidInput(f"{address!r} is not a valid mail address")
    return value


def addresses_in(values: Iterable[str]) -> tuple[str, ...]:
    """The `local@domain` addresses in address header values, in order, without repeats."""
    result: list[str] = []
    for value in values:
        for address in _addresses_of(str(value)):
            if address not in result:
                result.append(address)
    return tuple(result)


@functools.lru_cache(maxsize=512)
def _addresses_of(value: str) -> tuple[str, ...]:
    """One header value's addresses. Cached: the loop rules read the same From, Sender and
    To values several times per mail, and `getaddresses` costs ~20-60 µs each time."""
    try:
        pairs = getaddresses([value])
    except Exception:
        pairs = [("", m) for m in ADDRESS.findall(value[:2000])]
    return tuple(a for a in (address.strip() for _, address in pairs) if "@" in a)
