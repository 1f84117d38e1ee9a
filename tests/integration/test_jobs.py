"""The scheduler's jobs run against both databases."""

from __future__ import annotations

from gateway.app import App
from gateway.jobs import (
    _check_deadlines,
    _purge_tokens,
    _sweep_file_areas,
    _sweep_sessions,
    _sweep_unreferenced_blobs,
    build_scheduler,
)


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
