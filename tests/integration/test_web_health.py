"""/healthz and /metrics when the database is fine, unmigrated, or unreachable."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from gateway.app import App, build_app
from gateway.web.app import create_web_app
from tests.conftest import make_settings


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
    app.close()
