"""Abuse limits of one SMTP/LMTP listener: sessions at once, and how a session that keeps
making errors is slowed down and then ended (the listener, `smtp.py`, applies them).

In: the `[inbound]` limits (`ClientLimits.from_settings`); the client address of each
session that opens or closes; each reply the listener is about to send. Out: whether a new
session is admitted (else the `421` to send), how long to wait before an error reply, and
whether the session has made too many errors.

The rules, after Postfix's smtpd (`smtpd_client_connection_count_limit`,
`smtpd_soft_error_limit`, `smtpd_hard_error_limit`, `smtpd_error_sleep_time`):
- at most `max_sessions` sessions at once, and `max_sessions_per_client` from one client
  (`hops.client_key`: an IPv4 address, an IPv6 /64); trusted relays are exempt from the
  per-client limit (they carry everybody's mail; Postfix exempts `$mynetworks` the same
  way), never from the total. A session beyond a limit gets `421 4.7.0` (RFC 5321 §3.8:
  the client tries again later) and is closed before it is served.
- a client error (`is_client_error`: unknown recipient, relaying refused, bad command or
  sequence) counts. Up to `soft_error_limit` errors are answered at once; each further one
  waits `error_sleep_time x (errors - soft_error_limit)` seconds, so probing for addresses
  gets slower and slower; after the `hard_error_limit`-th error the session gets
  `421 4.7.0` and is closed. A stored mail starts the count again: a relay that delivers
  real mail in between is not punished for the odd unknown recipient.

Pure bookkeeping (no I/O, no clock): the listener sleeps with `asyncio.sleep`, never
blocking its event loop; all calls come from that one loop, so no lock is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.config.settings import InboundSettings
from gateway.inbound.hops import client_key, is_trusted_relay

# Replies that mean the client did something wrong: command syntax and sequence (RFC 5321
# §4.2.2: 500-504), an unknown mailbox or relaying refused (550), a bad address (553). Not
# counted: our own faults (451), limits of ours (452, 552) and the 421s we send ourselves.
CLIENT_ERRORS = frozenset({"500", "501", "502", "503", "504", "550", "553"})


def is_client_error(reply: str) -> bool:
    """Does this reply (its first line) count as one of the client's errors?"""
    return reply[:3] in CLIENT_ERRORS and reply[3:4] in (" ", "-", "")


@dataclass
class ClientLimits:
    """The limits of one listener and the sessions it has open."""

    max_sessions: int
    max_sessions_per_client: int
    soft_error_limit: int
    hard_error_limit: int
    error_sleep_time: float
    trusted_relays: Sequence[str]
    open_sessions: int = 0
    by_client: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, inbound: InboundSettings | None = None) -> ClientLimits:
        """The configured limits (the defaults without `inbound`)."""
        inbound = inbound or InboundSettings()
        return cls(max_sessions=inbound.max_sessions,
                   max_sessions_per_client=inbound.max_sessions_per_client,
                   soft_error_limit=inbound.soft_error_limit,
                   hard_error_limit=inbound.hard_error_limit,
                   error_sleep_time=inbound.error_sleep_time,
                   trusted_relays=tuple(inbound.trusted_relays))

    def admit(self, address: str | None) -> str | None:
        """Count a new session from `address`; None when admitted, else why it is not (it
        is then not counted, and `release` must not be called for it)."""
        if self.open_sessions >= self.max_sessions:
            return f"{self.open_sessions} sessions are open (max_sessions)"
        key = client_key(address)
        if (self.by_client.get(key, 0) >= self.max_sessions_per_client
                and not is_trusted_relay(address, self.trusted_relays)):
            return f"{self.by_client[key]} sessions from {key} are open (max_sessions_per_client)"
        self.open_sessions += 1
        self.by_client[key] = self.by_client.get(key, 0) + 1
        return None

    def release(self, address: str | None) -> None:
        """An admitted session from `address` has ended."""
        key = client_key(address)
        self.open_sessions -= 1
        left = self.by_client.get(key, 0) - 1
        if left > 0:
            self.by_client[key] = left
        else:
            self.by_client.pop(key, None)

    def error_delay(self, errors: int) -> float:
        """Seconds to wait before answering a session's `errors`-th error."""
        return max(0, errors - self.soft_error_limit) * self.error_sleep_time

    def too_many_errors(self, errors: int) -> bool:
        """After answering this many errors, the session is ended."""
        return errors >= self.hard_error_limit
