"""The hop that handed us a mail: whether what it wrote into the header can be believed, and
under which key a client's sessions are counted.

In: a received mail's `source` (smtp | lmtp | imap | ingest) and, for SMTP and LMTP, the
client's IP address as the listener saw it (`received_mail.client_address`); the configured
`[inbound] trusted_relays` (IP addresses and CIDR networks, validated by the config).

Out: `hop_trusted` (does an `Authentication-Results` header count), `is_trusted_relay`, and
`client_key` (the unit the listener's per-client session limit counts).

Why (RFC 8601 §5): an `Authentication-Results` header is worth only what the MTA that added
it is worth. Our border MTA removes headers that carry its authserv-id before it adds its
own; a client that talks to our SMTP port directly has passed no such MTA and can write any
header it likes, ours included. So the header counts only when the mail came from a trusted
relay, through `ticketgw ingest` (run by the local MTA's pipe transport, after the border
MTA) or from an IMAP mailbox (filled by the organisation's own mail server; the gateway sees
no SMTP client there, and whoever can change that mailbox or run `ingest` can change the
gateway's database as well). An SMTP/LMTP mail whose client address is unknown (stored
before the address was recorded) is not trusted.

Pure; never raises: an address that cannot be read is simply not trusted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
TRUSTED_SOURCES = ("ingest", "imap")     # no SMTP client of ours: see the docstring
IPV6_CLIENT_PREFIX = 64                  # one host usually holds a whole /64 (RFC 6177)


def peer_address(peer: object) -> str | None:
    """The IP address of an asyncio peername (`(host, port)`, or IPv6's 4-tuple)."""
    if isinstance(peer, tuple) and peer and isinstance(peer[0], str):
        return peer[0]
    return None


def parse_address(address: str | None) -> IPAddress | None:
    """The address, an IPv4-mapped IPv6 address (`::ffff:192.0.2.7`, what a dual-stack
    listener sees of an IPv4 client) as the IPv4 address; None when it is not one."""
    if not address:
        return None
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped
    return parsed


@lru_cache(maxsize=64)
def _networks(configured: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in configured)


def is_trusted_relay(address: str | None, trusted_relays: Sequence[str]) -> bool:
    """Is this client address in one of the configured networks?"""
    parsed = parse_address(address)
    if parsed is None:
        return False
    return any(parsed.version == net.version and parsed in net
               for net in _networks(tuple(trusted_relays)))


def hop_trusted(source: str, client_address: str | None,
                trusted_relays: Sequence[str]) -> bool:
    """May the headers of the hop that handed us this mail be believed (see the module's
    docstring)?"""
    if source in TRUSTED_SOURCES:
        return True
    return is_trusted_relay(client_address, trusted_relays)


def describe_hop(source: str, client_address: str | None,
                 trusted_relays: Sequence[str]) -> str:
    """For `inbound show`: where the mail came from and whether its hop is trusted."""
    if source in TRUSTED_SOURCES:
        return f"trusted ({source}: the local mail system)"
    if client_address is None:
        return f"not trusted ({source} client address unknown)"
    if hop_trusted(source, client_address, trusted_relays):
        return f"trusted ({client_address} is in [inbound] trusted_relays)"
    return (f"not trusted ({client_address} is not in [inbound] trusted_relays: its "
            "Authentication-Results are ignored)")


def client_key(address: str | None) -> str:
    """What the per-client session limit counts: the IPv4 address, the /64 of an IPv6
    address, or the peer as given when it is no IP address."""
    parsed = parse_address(address)
    if parsed is None:
        return address or "unknown"
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((int(parsed), IPV6_CLIENT_PREFIX), strict=False))
    return str(parsed)
