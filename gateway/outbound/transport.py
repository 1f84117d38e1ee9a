"""Transports: hand finished mail (envelope + raw bytes) to the next hop.

This module is what every transport promises and what the outbox relies on (`Transport`,
`Envelope`, `DeliveryResult`, `classify`) and the choice of the configured one
(`transport_from_settings`); the transports themselves are `maildir.MaildirTransport` and
`smtp.SmtpTransport`.

In: `send(envelope_from, recipients, raw)` for one mail, or `send_batch(envelopes)` for
several (each `Envelope` with a `key`, stable across attempts of that mail). Out: a
`DeliveryResult` per mail saying what the next hop did with it: `sent`, `temporary` (try
again later) or `permanent` (it will never take it), with the reply code and text, and
per-recipient refusals when the relay took the mail for some recipients and refused others.

Guarantees:
- `send` and `send_batch` never raise for anything the network, the relay or the disk does:
  every such failure is a `temporary` result with what happened in its text. Only
  `permanent` results (an SMTP `5xx` about this mail) make the outbox give up on a mail.
- `sent` is reported only after the next hop accepted responsibility: the relay's `250` to
  the end of DATA, or the Maildir file renamed into `new/` and the directory fsynced.
- `batch_size` is the most mails one `send_batch` call takes, and so the most results the
  outbox holds unrecorded (a crash before they are recorded sends them again): SMTP 1 (each
  mail recorded before the next is sent: at most the mail in flight is sent twice);
  Maildir a whole batch (one directory fsync for all; a batch sent again replaces its own
  files, named after each `Envelope.key`, so it leaves no duplicates in `new/`).
- SMTP sends CRLF line endings only (a bare CR or LF in `raw` becomes CRLF); the Maildir
  gets `raw` unchanged.
- A transport holds at most one connection, opened on the first `send` and kept for the
  following ones until `close()` (the outbox closes it after each batch, so no idle
  connection is left for the relay to time out).

Classification (RFC 5321 §4.2.1, §4.5.3.1.10):
- connection errors, timeouts, TLS errors and `4xx`: temporary;
- `552` (historically "too many recipients", RFC 5321 §4.5.3.1.10 says to treat it as
  temporary): temporary, unless its enhanced code says the mail is too big (RFC 3463
  `5.3.4`, `5.2.3`): sending the same bytes again cannot succeed, so permanent;
- every other `5xx`: permanent, except at login: a refused AUTH or a missing STARTTLS is
  our configuration, not the mail's fault, so it is temporary (retried until the deadline).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import urlsplit

from gateway.config.settings import Settings
from gateway.errors import ConfigError

Outcome = Literal["sent", "temporary", "permanent"]


@dataclass(frozen=True)
class Refusal:
    """One recipient the relay refused at RCPT TO."""

    recipient: str
    outcome: Literal["temporary", "permanent"]
    code: int
    text: str

    def describe(self) -> str:
        return f"<{self.recipient}>: {self.code} {self.text}"


@dataclass(frozen=True)
class DeliveryResult:
    """What became of one mail. `outcome` applies to every recipient not in `refused`;
    `text` says what happened, with the phase and the relay's reply ("end of DATA: 550 …")."""

    outcome: Outcome
    code: int | None = None
    text: str = ""
    refused: tuple[Refusal, ...] = ()

    def outcome_for(self, recipient: str) -> Outcome:
        for refusal in self.refused:
            if refusal.recipient == recipient:
                return refusal.outcome
        return self.outcome

    def describe(self) -> str:
        if not self.refused:
            return self.text
        return f"{self.text}; refused " + "; ".join(r.describe() for r in self.refused)


@dataclass(frozen=True)
class Envelope:
    """One mail for `send_batch`. `key` names this delivery, the same on every attempt and
    different for every other one (the outbox uses its row id and the Message-ID's
    digest): a transport that can, lets a repeated delivery replace the earlier one."""

    key: str
    envelope_from: str
    recipients: tuple[str, ...]
    raw: bytes


class Transport(Protocol):
    # the most mails one `send_batch` takes (their results are recorded together afterwards)
    batch_size: int

    def send(self, envelope_from: str, recipients: tuple[str, ...],
             raw: bytes) -> DeliveryResult: ...

    def send_batch(self, envelopes: Sequence[Envelope]) -> list[DeliveryResult]:
        """One result per envelope, in order; at most `batch_size` envelopes."""
        ...

    def close(self) -> None: ...


_TOO_BIG = re.compile(rb"^\s*5\.(?:3\.4|2\.3)(?!\d)")


def classify(code: int, reply: bytes | str = b"") -> Outcome:
    """An SMTP reply code (and its text, which may start with an RFC 3463 enhanced code)
    as an outcome (RFC 5321 §4.2.1)."""
    if 200 <= code < 300:
        return "sent"
    if code == 552:   # RFC 5321 §4.5.3.1.10: treat as temporary, unless "too big"
        text = reply.encode("utf-8", "replace") if isinstance(reply, str) else reply
        return "permanent" if _TOO_BIG.match(text) else "temporary"
    if 500 <= code < 600:
        return "permanent"
    return "temporary"   # 4xx, and anything malformed (-1 from smtplib)


# -- from the settings ------------------------------------------------------------------------

def transport_from_settings(settings: Settings) -> Transport:
    """The configured transport. "maildir:PATH" is resolved against the config file's
    directory; "smtp://host[:port]" (port 25 by default) or "smtps://host[:port]" (465).
    The password is read from the environment variable named by `smtp_password_env`."""
    # imported here: both transports import this module's results
    from gateway.outbound.maildir import MaildirTransport
    from gateway.outbound.smtp import SmtpTransport

    outbound = settings.outbound
    if outbound.transport.startswith("maildir:"):
        return MaildirTransport(settings.path(outbound.transport[len("maildir:"):]))
    url = urlsplit(outbound.transport)
    implicit_tls = url.scheme == "smtps"
    password = ""
    if outbound.smtp_password_env:
        password = os.environ.get(outbound.smtp_password_env, "")
        if not password:
            raise ConfigError([f"{settings.source}: outbound.smtp_password_env: environment "
                               f"variable {outbound.smtp_password_env} is not set"])
    elif outbound.smtp_user:
        raise ConfigError([f"{settings.source}: outbound.smtp_user is set, but no "
                           "smtp_password_env names the variable holding the password"])
    return SmtpTransport(url.hostname or "", url.port or (465 if implicit_tls else 25),
                         ssl=implicit_tls, starttls=outbound.starttls,
                         user=outbound.smtp_user, password=password)
