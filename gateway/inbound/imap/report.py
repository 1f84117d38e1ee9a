"""How the IMAP mailboxes are doing, for `ticketgw mailbox status`, /healthz and /metrics.

In: the `mailbox_state` rows (written by the pollers) and the configured mailbox names. Out:
`MailboxStatus` per configured mailbox (one never checked included), a JSON-able health
summary, and Prometheus metric families. Reads only; every instance reports the same,
whichever of them polls a mailbox.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from gateway.config.settings import Settings
from gateway.errors import TemporaryFailure
from gateway.store.db import Database
from gateway.store.models import MailboxState, table_of

_state = table_of(MailboxState)


@dataclass(frozen=True)
class MailboxStatus:
    """One mailbox as the status command, /healthz and /metrics report it."""

    name: str
    state: str                     # ok | failing | auth-failed | never-checked
    folder: str | None
    last_check: datetime | None
    last_attempt: datetime | None
    last_error: str | None
    error_kind: str | None
    error_since: datetime | None
    failures: int
    backlog: int
    messages: int | None
    imported: int
    uidvalidity: int | None
    last_uid: int
    owner: str | None

    def as_dict(self) -> dict[str, Any]:
        return {key: value.isoformat() if isinstance(value, datetime) else value
                for key, value in asdict(self).items()}


def mailbox_statuses(session: Session, names: Sequence[str]) -> list[MailboxStatus]:
    """The status of each named mailbox, in the given order (configured, never checked
    mailboxes included)."""
    rows = {row.name: row for row in session.execute(select(_state))}
    result = []
    for name in names:
        row = rows.get(name)
        if row is None or row.last_attempt is None:
            result.append(MailboxStatus(name, "never-checked", row.folder if row else None,
                                        None, None, None, None, None, 0,
                                        row.backlog if row else 0, None,
                                        row.imported if row else 0,
                                        row.uidvalidity if row else None,
                                        row.last_uid if row else 0, None))
            continue
        state = ("ok" if row.last_error is None
                 else "auth-failed" if row.error_kind == "auth" else "failing")
        result.append(MailboxStatus(
            name, state, row.folder, row.last_check, row.last_attempt, row.last_error,
            row.error_kind, row.error_since, row.failures, row.backlog, row.messages,
            row.imported, row.uidvalidity, row.last_uid, row.owner))
    return result


def mailbox_health(db: Database, settings: Settings) -> dict[str, Any]:
    """Per mailbox: state, last successful check, backlog, last error (for /healthz)."""
    try:
        with db.read() as session:
            statuses = mailbox_statuses(session, [m.name for m in settings.mailbox])
    except (TemporaryFailure, SQLAlchemyError):   # /healthz reports the database itself
        return {m.name: {"state": "unknown"} for m in settings.mailbox}
    return {s.name: {"state": s.state, "last_check": _iso(s.last_check), "backlog": s.backlog,
                     "last_error": s.last_error} for s in statuses}


def mailbox_metrics(statuses: Sequence[MailboxStatus]) -> Iterator[Metric]:
    """Prometheus families, one sample per mailbox (label `mailbox`)."""
    last_check = GaugeMetricFamily(
        "ticketgw_mailbox_last_check_timestamp_seconds",
        "Unix time of the last complete, successful check of the mailbox (0: never)",
        labels=["mailbox"])
    backlog = GaugeMetricFamily(
        "ticketgw_mailbox_backlog",
        "Messages in the folder not yet stored or not yet marked, at the last check",
        labels=["mailbox"])
    up = GaugeMetricFamily("ticketgw_mailbox_up",
                           "1 if the last attempt to check the mailbox succeeded",
                           labels=["mailbox"])
    failures = GaugeMetricFamily("ticketgw_mailbox_failures",
                                 "Failed attempts in a row", labels=["mailbox"])
    imported = CounterMetricFamily("ticketgw_mailbox_imported_mails",
                                   "Mails stored from the mailbox", labels=["mailbox"])
    for status in statuses:
        label = [status.name]
        last_check.add_metric(label, status.last_check.timestamp() if status.last_check else 0)
        backlog.add_metric(label, status.backlog)
        up.add_metric(label, 1 if status.state == "ok" else 0)
        failures.add_metric(label, status.failures)
        imported.add_metric(label, status.imported)
    yield from (last_check, backlog, up, failures, imported)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
