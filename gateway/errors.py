"""The few error types the stages raise, and what each means to a caller.

- `TemporaryFailure`: try again later. SMTP answers 4xx, `ticketgw ingest` exits 75.
- `ConfigError`: the configuration is invalid; carries every problem found, not just the first.
- `NotFound` / `InvalidInput`: a user asked for something that does not exist or is malformed.
- `DatabaseNotReady`: the database is unreachable or not migrated; the message says what to do.

Rejected and ignored mail are routing *decisions* (`routing.RejectDecision`,
`IgnoreDecision`), not exceptions. Anything raised inside processing is a bug: the message
is kept, retried and, after three attempts, quarantined.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base class: the message is meant for the user and carries no internal detail."""


class TemporaryFailure(GatewayError):
    """Could not do it now (database down, disk full); the caller must retry later."""


class NotFound(GatewayError):
    """The thing asked for (ticket number, customer, template) does not exist."""


class InvalidInput(GatewayError):
    """A value given by a user is malformed (state, priority, address, CSV row)."""


class DatabaseNotReady(GatewayError):
    """The database cannot be reached or is not migrated to the current schema."""


class ConfigError(GatewayError):
    """The configuration is invalid. `problems` lists every "file: key: problem" line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))
