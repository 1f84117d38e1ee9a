"""The web application: health and metrics now; the portal pages join it per area.

`/healthz` answers 200 with {"status": "ok"} when the database answers, 503 otherwise (so a
load balancer takes the instance out). `/metrics` is the Prometheus text format, computed
from the database at scrape time, so every instance reports the same shared queues.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Table, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from gateway import __version__
from gateway.app import App
from gateway.errors import DatabaseNotReady, TemporaryFailure
from gateway.store.models import OutboundMail, ReceivedMail, table_of
from gateway.ticket_queries import count_tickets_by_state


def create_web_app(app: App) -> FastAPI:
    web = FastAPI(title="ticket-gateway", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_DatabaseCollector(app))

    @web.get("/healthz")
    def healthz() -> Response:
        try:
            app.db.ping()
        except (DatabaseNotReady, TemporaryFailure):
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, 503)
        return JSONResponse({"status": "ok", "database": "ok", "version": __version__})

    @web.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return web


class _DatabaseCollector(Collector):
    """Gauges read from the database on every scrape."""

    def __init__(self, app: App) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        yield InfoMetricFamily("ticketgw_build", "ticket-gateway version",
                               value={"version": __version__})
        up = GaugeMetricFamily("ticketgw_database_up", "1 if the database answered the scrape")
        try:
            with self.app.db.read() as session:
                tickets = count_tickets_by_state(session)
                received = _count_by_status(session, table_of(ReceivedMail))
                outbound = _count_by_status(session, table_of(OutboundMail))
        except (TemporaryFailure, SQLAlchemyError):   # down, or not migrated
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for name, text, counts, label in (
            ("ticketgw_tickets", "Tickets by state", tickets, "state"),
            ("ticketgw_received_mail", "Received mail by processing status", received, "status"),
            ("ticketgw_outbound_mail", "Outbound mail by delivery status", outbound, "status"),
        ):
            family = GaugeMetricFamily(name, text, labels=[label])
            for key, value in sorted(counts.items()):
                family.add_metric([key], value)
            yield family


def _count_by_status(session: Session, table: Table) -> dict[str, int]:
    rows = session.execute(select(table.c.status, func.count()).group_by(table.c.status))
    return {status: count for status, count in rows}
