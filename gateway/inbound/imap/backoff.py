"""How long an IMAP poller waits after failures before it tries again.

In: the kind of the failure (`ImapFailure.kind`) and how many failed in a row. Out: a delay
in seconds.

Guarantees: the delay doubles per failure up to a ceiling, with jitter (between half the
ceiling and the ceiling), so instances and mailboxes do not retry in step: 1 s to 5 min,
and for a refused login 60 s to 30 min, so a wrong password does not hammer the server
(RFC 3501 §6.2.3: servers may lock out clients that keep failing).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delays between failed attempts: doubling per failure, with jitter (so instances and
    mailboxes do not retry in step); slower for refused logins."""

    first: float = 1.0
    maximum: float = 300.0
    auth_first: float = 60.0
    auth_maximum: float = 1800.0

    def delay(self, kind: str, failures: int) -> float:
        first, maximum = ((self.auth_first, self.auth_maximum) if kind == "auth"
                          else (self.first, self.maximum))
        ceiling = min(maximum, first * 2 ** min(max(failures - 1, 0), 30))
        return random.uniform(ceiling / 2, ceiling)
