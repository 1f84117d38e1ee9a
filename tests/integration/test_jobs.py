"""The scheduler's jobs run against both databases."""

from __future__ import annotations

import logging

import pytest

from gateway.app import App
from gateway.jobs import (
    _check_deadlines,
    _purge_tokens,
    _sweep_file_areas,
    _sweep_sessions,
    _sweep_unreferenced_blobs,
    build_scheduler,
    tolerating_outages,
)
from gateway.store.db import Database
from tests.serve_helpers import free_port


def test_the_housekeeping_jobs_are_scheduled_and_run(app: App) -> None:
    scheduler = build_scheduler(app.db, app.blobs, app.settings.web, answering=app.answering)
    assert {job.id for job in scheduler.get_jobs()} == {"purge-expired-tokens",
                                                        "sweep-web-sessions",
                                                        "sweep-file-areas",
                                                        "sweep-unreferenced-blobs",
                                                        "check-deadlines"}
    check = scheduler.get_job("check-deadlines")
    assert check.trigger.interval.total_seconds() == 60
    _check_deadlines(app.db, app.answering)
    _purge_tokens(app.db)
    _sweep_sessions(app.db, app.settings.web)
    _sweep_file_areas(app.db, app.blobs)
    _sweep_unreferenced_blobs(app.db, app.blobs)


def test_a_job_meeting_a_database_outage_is_one_warning_without_traceback(
        app: App, caplog: pytest.LogCaptureFixture) -> None:
    gone = Database(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/gone")
    with caplog.at_level(logging.INFO, logger="gateway"):
        tolerating_outages(_sweep_sessions)(gone, app.settings.web)
    [line] = caplog.records
    assert line.levelname == "WARNING" and not line.exc_info
    assert line.getMessage().startswith("sweep_sessions: not run, database unavailable")
    gone.dispose()
