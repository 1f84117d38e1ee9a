"""The scheduler's wiring (APScheduler 3, asyncio flavour) and nothing else: each job is a
plain function elsewhere; here we only say when it runs.

Jobs run in the scheduler's thread pool, each in its own database transaction, so a slow job
never blocks the event loop that serves SMTP and HTTP. `coalesce` and `max_instances=1` keep a
late job from piling up.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from gateway.config.settings import WebSettings
from gateway.errors import TemporaryFailure
from gateway.outbound.answers import Answering
from gateway.outbound.digest import send_digests
from gateway.store.blobs import BlobStore
from gateway.store.claims import one_instance_at_a_time
from gateway.store.db import Database
from gateway.store.housekeeping import (
    purge_expired_tokens,
    sweep_file_areas,
    sweep_unreferenced_blobs,
)
from gateway.store.models import utcnow
from gateway.tickets.deadline_check import check_deadlines

log = logging.getLogger(__name__)


def build_scheduler(db: Database, blobs: BlobStore, web: WebSettings, *,
                    answering: Answering | None = None) -> AsyncIOScheduler:
    """The housekeeping jobs; with `answering` also the deadline check (service levels and
    waiting customers) every minute, and the staff digest when `[digest] schedule` is set
    (a crontab line in `[tickets] timezone`)."""
    scheduler = AsyncIOScheduler(timezone="UTC", job_defaults={
        "coalesce": True, "max_instances": 1, "misfire_grace_time": 300})
    scheduler.add_job(tolerating_outages(_purge_tokens), "interval", args=[db], minutes=30,
                      id="purge-expired-tokens", next_run_time=utcnow())
    scheduler.add_job(tolerating_outages(_sweep_sessions), "interval", args=[db, web],
                      minutes=30, id="sweep-web-sessions", next_run_time=utcnow())
    scheduler.add_job(tolerating_outages(_sweep_file_areas), "interval", args=[db, blobs],
                      minutes=30, id="sweep-file-areas", next_run_time=utcnow())
    # not at start: it lists every blob (a whole bucket on S3), and nothing is urgent here
    scheduler.add_job(tolerating_outages(_sweep_unreferenced_blobs), "interval",
                      args=[db, blobs], hours=6, id="sweep-unreferenced-blobs")
    if answering is not None and answering.settings.digest.schedule.strip():
        settings = answering.settings
        scheduler.add_job(tolerating_outages(_send_digests), CronTrigger.from_crontab(
            settings.digest.schedule, timezone=settings.tickets.timezone),
            args=[db, answering], id="staff-digest")
    if answering is not None:
        scheduler.add_job(tolerating_outages(_check_deadlines), "interval",
                          args=[db, answering], minutes=1, id="check-deadlines",
                          next_run_time=utcnow())
    return scheduler


def tolerating_outages(job: Callable[..., None]) -> Callable[..., None]:
    """The job, with a database outage as one WARNING line (the next run tries again)
    instead of APScheduler's traceback at ERROR; any other error still gets that."""
    @functools.wraps(job)
    def run(*args: Any) -> None:
        try:
            job(*args)
        except TemporaryFailure as exc:
            log.warning("%s: not run, %s; the next run tries again", job.__name__.strip("_"),
                        exc)

    return run


DIGEST_ONCE = timedelta(minutes=30)   # every instance's schedule fires; one digest per slot


def _send_digests(db: Database, answering: Answering, now: datetime | None = None) -> None:
    """The staff digest as of `now` (`outbound/digest.send_digests`), once per scheduled
    slot however many instances run the schedule: the first sends, the others find its mail
    queued within `DIGEST_ONCE` and skip. Not on a public holiday (`[tickets] holidays`, a
    date in `[tickets] timezone`): a crontab line knows no holidays, the desk does."""
    now = now or utcnow()
    tickets = answering.settings.tickets
    today = now.astimezone(ZoneInfo(tickets.timezone)).date()
    if today in tickets.holidays:
        log.info("staff digest: not sent, %s is a holiday ([tickets] holidays)", today)
        return
    with db.write() as session:
        one_instance_at_a_time(session, "staff-digest")
        results = send_digests(session, answering, now, unless_sent_since=now - DIGEST_ONCE)
    queued = [r.staff for r in results if r.outcome == "queued"]
    if results:
        log.info("staff digest: queued for %s; %s", ", ".join(queued) or "nobody",
                 ", ".join(f"{r.staff}: {r.outcome}" for r in results if r.outcome != "queued")
                 or "no one left out")


def _check_deadlines(db: Database, answering: Answering) -> None:
    """Service-level reminders and escalations, customer-wait reminders and closings
    (`tickets/deadline_check.py`), as of now."""
    with db.write(patient=True) as session:
        actions = check_deadlines(session, answering, utcnow())
    for action in actions:
        log.info("deadline: %s %s %s -> %s", action.ticket, action.action,
                 action.target or "", ", ".join(action.recipients) or action.note)


def _sweep_sessions(db: Database, web: WebSettings) -> None:
    """Expired portal sessions are refused when used; this removes the ones never used again."""
    from gateway.web.sessions import SessionPolicy, sweep_sessions

    policy = SessionPolicy(idle=timedelta(minutes=web.session_idle_minutes),
                           maximum=timedelta(hours=web.session_max_hours))
    with db.write() as session:
        removed = sweep_sessions(session, policy)
    if removed:
        log.info("removed %d expired web sessions", removed)


def _purge_tokens(db: Database) -> None:
    with db.write() as session:
        removed = purge_expired_tokens(session, utcnow())
    if removed:
        log.info("purged %d expired tokens", removed)


def _sweep_file_areas(db: Database, blobs: BlobStore) -> None:
    """Expired and revoked file-exchange areas: closed, their files removed unless a ticket
    (or another area) holds them."""
    with db.write() as session:
        areas, removed = sweep_file_areas(session, blobs, utcnow())
    if areas:
        log.info("closed %d file-exchange areas, removed %d files", areas, removed)


def _sweep_unreferenced_blobs(db: Database, blobs: BlobStore) -> None:
    """Blobs no row names (a rollback or crash after the upload): removed after a day."""
    removed = sweep_unreferenced_blobs(db, blobs, utcnow())
    if removed:
        log.info("removed %d unreferenced blobs", removed)
