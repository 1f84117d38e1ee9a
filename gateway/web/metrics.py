"""`/metrics`: gauges read from the shared database at every scrape, `up` per component, and
the counters and histograms of this instance (`ProcessCollector`).

In: the `App` and the `Liveness` view of the same `serve` (empty outside `serve`). Out: a
prometheus_client `Collector` for a `CollectorRegistry`.

Guarantees: a scrape never fails: a database that does not answer (or is not migrated)
gives `ticketgw_database_up 0` and no queue gauges. Every known ticket state and mail status
is present, with 0 when none has it, so an alert on a series sees 0 rather than no data;
the oldest-waiting gauges are 0 when nothing waits.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import get_args

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Table, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from gateway import __version__
from gateway.app import App
from gateway.config.settings import StateName
from gateway.errors import TemporaryFailure
from gateway.inbound.imap.report import mailbox_metrics, mailbox_statuses
from gateway.observe import metrics
from gateway.store.models import OutboundMail, ReceivedMail, table_of
from gateway.tickets.queries import count_tickets_by_state
from gateway.web.health import Liveness, waiting_mail

TICKET_STATES = get_args(StateName)
RECEIVED_STATUSES = ("pending", "done", "quarantined")
OUTBOUND_STATUSES = ("queued", "sent", "failed", "suppressed")


class DatabaseCollector(Collector):
    """The gauges of `/metrics` (see the module's guarantees)."""

    def __init__(self, app: App, liveness: Liveness | None = None) -> None:
        self.app = app
        self.liveness = liveness or {}

    def collect(self) -> Iterator[Metric]:
        yield InfoMetricFamily("ticketgw_build", "ticket-gateway version",
                               value={"version": __version__})
        if self.liveness:
            components = GaugeMetricFamily(
                "ticketgw_component_up", "1 while the component of this serve works",
                labels=["component"])
            for name, problem_of in sorted(self.liveness.items()):
                components.add_metric([name], 0 if problem_of() else 1)
            yield components
        up = GaugeMetricFamily("ticketgw_database_up", "1 if the database answered the scrape")
        try:
            with self.app.db.read() as session:
                tickets = count_tickets_by_state(session)
                received = _count_by_status(session, table_of(ReceivedMail))
                outbound = _count_by_status(session, table_of(OutboundMail))
                waiting = waiting_mail(session)
                mailboxes = mailbox_statuses(session, [m.name for m in
                                                       self.app.settings.mailbox])
        except (TemporaryFailure, SQLAlchemyError):   # down, or not migrated
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for name, help_text, counts, label, known in (
            ("ticketgw_tickets", "Tickets by state", tickets, "state", TICKET_STATES),
            ("ticketgw_received_mail", "Received mail by processing status", received,
             "status", RECEIVED_STATUSES),
            ("ticketgw_outbound_mail", "Outbound mail by delivery status", outbound, "status",
             OUTBOUND_STATUSES),
        ):
            family = GaugeMetricFamily(name, help_text, labels=[label])
            for key, value in sorted({**dict.fromkeys(known, 0), **counts}.items()):
                family.add_metric([key], value)
            yield family
        for name, help_text, seconds in (
            ("ticketgw_received_mail_oldest_pending_age_seconds",
             "Age of the oldest received mail waiting to be processed (0: none)",
             waiting.received_age),
            ("ticketgw_outbound_mail_oldest_queued_age_seconds",
             "Age of the oldest queued outbound mail (0: none)", waiting.outbound_age),
            ("ticketgw_outbound_mail_overdue_seconds",
             "How far the earliest next attempt of queued outbound mail is past (0: none)",
             waiting.outbound_overdue),
        ):
            yield GaugeMetricFamily(name, help_text, value=seconds)
        yield from mailbox_metrics(mailboxes)


class ProcessCollector(Collector):
    """The counters and histograms of this process (`gateway/observe/metrics.py`): in
    `serve`, also those its worker process forwarded."""

    def collect(self) -> Iterator[Metric]:
        yield from metrics.REGISTRY.collect()


def _count_by_status(session: Session, table: Table) -> dict[str, int]:
    rows = session.execute(select(table.c.status, func.count()).group_by(table.c.status))
    return {status: count for status, count in rows}
