"""Mail address helpers (pure).

RFC 5321 §2.4: the local part of an address may be case-sensitive, the domain is not. So an
address is matched by `address_key`: the local part exactly as written, the domain lower-cased.
"""

from __future__ import annotations

from email.utils import parseaddr

from gateway.errors import InvalidInput


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
