"""The inbound worker: takes stored mail from the database and runs the pipeline on it.

How work is taken, so that no mail is lost, none is processed twice at once, and one bad mail
never blocks the queue:
1. `lease_batch`: one short transaction claims due `pending` rows (`FOR UPDATE SKIP LOCKED`
   on PostgreSQL), counts the attempt and pushes `next_attempt` a lease into the future;
   other instances skip them until then. The attempt is counted *before* processing, so a
   mail that crashes the worker process is not retried for ever.
2. `process_leased`: one transaction per mail: parse, route, apply, record the outcome.
   On any exception the transaction rolls back, and a second one records the error; after
   `MAX_ATTEMPTS` the mail is quarantined and the rest of the queue moves on.
A worker that dies mid-lease loses nothing: its mails become due again when the lease ends.
"""

from __future__ import annotations

import logging
import threading
import traceback
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlmodel import Session

from gateway.app import App
from gateway.doorbell import Bell
from gateway.pipeline import Outcome, process_mail
from gateway.store.claims import claim_due
from gateway.store.models import ReceivedMail, table_of, utcnow
from gateway.tickets import storable

log = logging.getLogger(__name__)

_received = table_of(ReceivedMail)
MAX_ATTEMPTS = 3
LEASE = timedelta(minutes=5)
RETRY_DELAYS = (timedelta(seconds=30), timedelta(minutes=5))   # after the 1st, 2nd failure


@dataclass(frozen=True)
class Processed:
    mail_id: int
    outcome: str
    ticket_number: str | None
    reason: str


def lease_batch(app: App, limit: int = 20) -> list[int]:
    """Claim up to `limit` due mails for this worker; mails that already used all their
    attempts (their worker died each time) are quarantined instead."""
    now = utcnow()
    leased: list[int] = []
    with app.db.write() as session:
        for row in claim_due(session, _received, status="pending", now=now, limit=limit,
                             columns=("id", "attempts")):
            if row.attempts >= MAX_ATTEMPTS:
                session.execute(update(_received).where(_received.c.id == row.id).values(
                    status="quarantined", outcome="quarantined", processed=now,
                    reason=f"processing did not finish in {row.attempts} attempts "
                           "(the worker stopped each time)"))
                log.error("inbound %d: quarantined after %d unfinished attempts", row.id,
                          row.attempts)
                continue
            session.execute(update(_received).where(_received.c.id == row.id).values(
                attempts=row.attempts + 1, next_attempt=now + LEASE))
            leased.append(row.id)
    return leased


def lease_ids(app: App, mail_ids: list[int]) -> list[int]:
    """Lease these pending mails now (for `ingest` and `quarantine retry`, which process
    what they stored at once); mails another worker holds are left to it."""
    now = utcnow()
    leased: list[int] = []
    with app.db.write() as session:
        for start in range(0, len(mail_ids), 500):
            rows = session.execute(
                select(_received.c.id, _received.c.attempts)
                .where(_received.c.id.in_(mail_ids[start:start + 500]),
                       _received.c.status == "pending")
                .with_for_update(skip_locked=True)).all()
            for row in rows:
                session.execute(update(_received).where(_received.c.id == row.id).values(
                    attempts=row.attempts + 1, next_attempt=now + LEASE))
                leased.append(row.id)
    return sorted(leased)


def process_leased(app: App, mail_id: int) -> Processed:
    """Process one leased mail in its own transaction; failures are recorded, never raised."""
    try:
        with app.db.write() as session:
            row = session.execute(select(_received).where(_received.c.id == mail_id)
                                  .with_for_update()).one()
            if row.status != "pending":
                return Processed(mail_id, row.outcome or row.status, None, "already done")
            outcome = process_mail(session, app, raw=row.raw, received=row.received,
                                   envelope_from=_envelope_from(row.source, row.envelope_from),
                                   envelope_to=row.envelope_to, mail_id=mail_id)
            _record(session, mail_id, outcome)
    except Exception as exc:
        return _record_failure(app, mail_id, exc)
    log.info("inbound %d %s: %s %s (%s: %s)", mail_id, outcome.message_id, outcome.outcome,
             outcome.ticket_number or "-", outcome.rule, outcome.reason)
    return Processed(mail_id, outcome.outcome, outcome.ticket_number, outcome.reason)


def _envelope_from(source: str, stored: str) -> str | None:
    """SMTP/LMTP know the reverse-path ("" is <>); for files and IMAP it is unknown."""
    return stored if source in ("smtp", "lmtp") else (stored or None)


def _record(session: Session, mail_id: int, outcome: Outcome) -> None:
    status = "quarantined" if outcome.outcome == "quarantined" else "done"
    session.execute(update(_received).where(_received.c.id == mail_id).values(
        status=status, outcome=outcome.outcome, reason=storable(outcome.reason)[:4000],
        rule=outcome.rule, ticket_id=outcome.ticket_id,
        message_id=storable(outcome.message_id or "")[:1000] or None,
        from_address=storable(outcome.from_address or "")[:1000] or None,
        subject=storable(outcome.subject or "")[:1000] or None, processed=utcnow(),
        last_error=None))


def _record_failure(app: App, mail_id: int, exc: Exception) -> Processed:
    error = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:4000]
    log.exception("inbound %d: processing failed", mail_id)
    try:
        with app.db.write() as session:
            attempts = session.execute(select(_received.c.attempts)
                                       .where(_received.c.id == mail_id)).scalar_one()
            if attempts >= MAX_ATTEMPTS:
                values: dict[str, object] = {
                    "status": "quarantined", "outcome": "quarantined", "processed": utcnow(),
                    "reason": f"failed {attempts} times; last error: {error}"}
            else:
                values = {"next_attempt": utcnow() + RETRY_DELAYS[min(attempts, 2) - 1]}
            session.execute(update(_received).where(_received.c.id == mail_id)
                            .values(last_error=error, **values))
    except Exception:
        # the database itself is failing: the lease expires and the mail is retried then
        log.exception("inbound %d: could not record the failure", mail_id)
        return Processed(mail_id, "pending", None, error)
    outcome = str(values.get("outcome", "pending"))
    return Processed(mail_id, outcome, None, error)


def process_due(app: App, limit: int = 20) -> list[Processed]:
    """Lease and process one batch; the processed mails (empty when nothing was due)."""
    return [process_leased(app, mail_id) for mail_id in lease_batch(app, limit)]


def run_worker(app: App, stop: threading.Event, wake: Bell | None = None,
               idle_poll: float = 0.5) -> None:
    """Process mail until `stop` is set; sleeps `idle_poll` seconds (or until the bell
    rings) when nothing is due. A database outage is waited out, not fatal."""
    log.info("inbound worker started")
    while not stop.is_set():
        try:
            done = process_due(app)
        except Exception:
            log.exception("inbound worker: could not lease mail; retrying")
            done = []
        if not done:
            if wake is not None:
                wake.wait(idle_poll)
            else:
                stop.wait(idle_poll)
    log.info("inbound worker stopped")
