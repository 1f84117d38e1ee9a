"""/healthz and /metrics when the database is fine, unmigrated, or unreachable; /healthz
when a component of the same serve is dead or mail waits too long; no cookies on either."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import update

from gateway.app import App, build_app, prepare_database
from gateway.child_processes import OutboxComponent
from gateway.inbound.intake import Envelope, Incoming, accept_many
from gateway.outbound.mail import OutgoingMail
from gateway.outbound.outbox import enqueue
from gateway.store.models import OutboundMail, ReceivedMail, table_of, utcnow
from gateway.web.app import create_web_app
from tests.conftest import make_settings

_received = table_of(ReceivedMail)
_outbound = table_of(OutboundMail)


def test_health_and_metrics_of_a_working_instance(app: App) -> None:
    client = TestClient(create_web_app(app))
    assert client.get("/healthz").json()["status"] == "ok"
    text = client.get("/metrics").text
    assert "ticketgw_database_up 1.0" in text
    assert 'ticketgw_build_info{version="' in text


def test_unreachable_database_is_503_and_down_in_metrics(tmp_path: Path) -> None:
    app = build_app(make_settings("postgresql+psycopg://gw@127.0.0.1:1/gw", tmp_path))
    client = TestClient(create_web_app(app))
    health = client.get("/healthz")
    assert health.status_code == 503 and health.json()["database"] == "unreachable"
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "ticketgw_database_up 0.0" in metrics.text
    app.close()


def test_unmigrated_database_reports_down_instead_of_failing(tmp_path: Path) -> None:
    app = build_app(make_settings(f"sqlite:///{tmp_path}/empty.db", tmp_path))
    metrics = TestClient(create_web_app(app)).get("/metrics")
    assert metrics.status_code == 200 and "ticketgw_database_up 0.0" in metrics.text
    health = TestClient(create_web_app(app)).get("/healthz")
    assert health.status_code == 503
    assert health.json()["problems"] == ["the mail queues could not be read"]
    app.close()


# -- what /healthz judges besides the database (issue #15 item 3) ----------------------------

def test_a_dead_component_of_the_same_serve_is_503_with_its_reason(app: App) -> None:
    alive: dict[str, str | None] = {"worker": None, "outbox": None}
    client = TestClient(create_web_app(app, {name: lambda name=name: alive[name]
                                             for name in alive}))
    health = client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["components"] == {"outbox": "ok", "worker": "ok"}
    alive["outbox"] = "the outbox thread has stopped"
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.json()["status"] == "unavailable"
    assert health.json()["components"] == {"outbox": "down", "worker": "ok"}
    assert health.json()["problems"] == ["outbox: the outbox thread has stopped"]


def test_the_outbox_process_reported_when_it_dies_but_not_after_a_stop(app: App) -> None:
    class Slow(OutboxComponent):
        FIRST_PAUSE = 60.0                              # not started again in this test

    async def scenario() -> None:
        outbox = Slow(app)
        assert outbox.problem() is None                 # not started yet
        await outbox.start()
        assert outbox.problem() is None
        assert outbox.process is not None
        outbox.process.kill()
        await asyncio.to_thread(outbox.process.join, 30)
        assert outbox.problem() == "the outbox process is not running (killed by SIGKILL)"
        await outbox.stop()
        assert outbox.problem() is None                 # stopped on purpose

    asyncio.run(scenario())


def _received_mail_waiting(app: App, seconds: int) -> None:
    envelope = Envelope(source="ingest", mail_from="max@acme.example",
                        rcpt_to=("stoerung@support.example.com",))
    [mail_id] = accept_many(app.db, [Incoming(b"Subject: waiting\r\n\r\nHallo\r\n", envelope)],
                            blobs=app.blobs)
    with app.db.write() as session:
        session.execute(update(_received).where(_received.c.id == mail_id)
                        .values(received=utcnow() - timedelta(seconds=seconds)))


def test_received_mail_waiting_past_the_threshold_is_503(app: App) -> None:
    client = TestClient(create_web_app(app))
    _received_mail_waiting(app, 200)                # default threshold: 300 s
    assert client.get("/healthz").status_code == 200
    _received_mail_waiting(app, 400)
    health = client.get("/healthz")
    assert health.status_code == 503
    [problem] = health.json()["problems"]
    assert problem.startswith("the oldest received mail has waited 4")
    assert "(more than 300 s)" in problem


def test_the_received_age_threshold_is_configurable(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path,
                             web={"listen": "", "health_max_received_age": 600})
    app = build_app(settings)
    try:
        prepare_database(app, migrate=False)
        _received_mail_waiting(app, 400)
        assert TestClient(create_web_app(app)).get("/healthz").status_code == 200
    finally:
        app.close()


def test_outbound_mail_overdue_past_the_threshold_is_503(app: App) -> None:
    client = TestClient(create_web_app(app))
    mail = OutgoingMail(event="ack", envelope_from="support@support.example.com",
                        recipients=("max@acme.example",), message_id="<overdue@support>",
                        raw=b"Subject: overdue\r\n\r\nHallo\r\n")
    with app.db.write() as session:
        mail_id = enqueue(session, mail)
    assert client.get("/healthz").status_code == 200          # due now, not overdue
    with app.db.write() as session:
        session.execute(update(_outbound).where(_outbound.c.id == mail_id)
                        .values(next_attempt=utcnow() - timedelta(seconds=1000)))
    health = client.get("/healthz")
    assert health.status_code == 503
    [problem] = health.json()["problems"]
    assert problem.startswith("the oldest queued outbound mail is 1")
    assert "(more than 900 s)" in problem


def test_health_and_metrics_set_no_cookie(app: App) -> None:
    web = create_web_app(app)
    assert "set-cookie" in TestClient(web).get("/login").headers    # the portal does
    for path in ("/healthz", "/metrics"):
        response = TestClient(web).get(path)          # a fresh client: no cookie to send
        assert response.status_code == 200
        assert "set-cookie" not in response.headers, path


def test_metrics_have_every_status_and_the_oldest_waiting_ages(app: App) -> None:
    client = TestClient(create_web_app(app))
    text = client.get("/metrics").text
    for line in ('ticketgw_tickets{state="pending"} 0.0',
                 'ticketgw_received_mail{status="quarantined"} 0.0',
                 'ticketgw_outbound_mail{status="suppressed"} 0.0',
                 "ticketgw_received_mail_oldest_pending_age_seconds 0.0",
                 "ticketgw_outbound_mail_oldest_queued_age_seconds 0.0",
                 "ticketgw_outbound_mail_overdue_seconds 0.0"):
        assert line in text.splitlines(), line
    assert "ticketgw_component_up" not in text                 # not under serve
    _received_mail_waiting(app, 400)
    ages = {line.split()[0]: float(line.split()[1]) for line in
            client.get("/metrics").text.splitlines() if line.startswith("ticketgw_received")}
    assert ages['ticketgw_received_mail{status="pending"}'] == 1
    assert 400 <= ages["ticketgw_received_mail_oldest_pending_age_seconds"] < 3000


def test_metrics_report_up_per_component_of_the_same_serve(app: App) -> None:
    client = TestClient(create_web_app(app, {"worker": lambda: "dead", "outbox": lambda: None}))
    text = client.get("/metrics").text.splitlines()
    assert 'ticketgw_component_up{component="worker"} 0.0' in text
    assert 'ticketgw_component_up{component="outbox"} 1.0' in text
