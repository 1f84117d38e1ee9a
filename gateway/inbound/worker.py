"""The inbound worker: takes stored mail from the database and runs the pipeline on it.

How work is taken, so that no mail is lost, none is processed twice at once, and one bad mail
never blocks the queue:
1. `lease_batch`: one short transaction claims due `pending` rows (`FOR UPDATE SKIP LOCKED`
   on PostgreSQL), counts the attempt and pushes `next_attempt` a lease into the future;
   other instances skip them until then. The attempt is counted *before* processing, so a
   mail that crashes the worker process is not retried for ever.
2. `process_batch`: the leased mails are read and parsed outside any write transaction
   (parsing is pure CPU and must not hold SQLite's write lock); then one write transaction
   routes, applies and records the mails. A mail that fails rolls back alone: the first
   pass has no savepoints (they cost two statements per mail), and when a mail fails in
   it, the transaction is rolled back and done again with a savepoint per mail. The
   failure is recorded in that transaction, and after `MAX_ATTEMPTS` the mail is
   quarantined while the rest of the queue moves on. Each mail's changes (ticket,
   article, answers, outcome) stay atomic; the mails of a transaction share one commit
   (one fsync, one WAL flush), as the intake's group commit does. A
   transaction takes more mails only for `TRANSACTION_BUDGET` and ends early when received
   mail waits for SQLite's write lock (`store/priority.py`). A transaction that cannot
   commit at all is tried again mail by mail.
Poison mail (issue #14): whatever a mail's bytes (empty, a header that blows the stdlib's
recursion, a body that makes a bug raise), that mail alone is retried or quarantined and its
companions in the batch go on. A `RecursionError` while understanding a mail comes back on
every attempt, so that mail is quarantined at once, with one log line instead of a traceback
thousands of lines long. Every quarantined or failing mail is recorded with its From and
Subject (from the parser, or `mail.peek` when the parser failed), so the operator's lists
(`ticketgw quarantine list`, `inbound list`) say which mail it is.
In: the database and the `pipeline.Stages` (built once per worker process by the composition
root). A worker that dies mid-lease loses nothing: its mails become due again when the lease ends.
Leases are committed with `db.write(durable=False)`: a power failure may forget a lease (and
its attempt count), which only repeats work; the mails' results are written durably.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlmodel import Session

from gateway.inbound.doorbell import Bell
from gateway.inbound.hops import hop_trusted
from gateway.inbound.intake import left_out_files, stored_raw
from gateway.mail.mime_text import collapse_whitespace
from gateway.mail.peek import HEAD_BYTES, peek_from_subject
from gateway.pipeline import Outcome, Stages, Understood, route_and_apply, understand_stored
from gateway.store.blobs import BlobStore
from gateway.store.claims import claim_due
from gateway.store.db import Database
from gateway.store.models import ReceivedMail, table_of, utcnow
from gateway.tickets.ticket import storable

log = logging.getLogger(__name__)

_received = table_of(ReceivedMail)
MAX_ATTEMPTS = 3
LEASE = timedelta(minutes=5)
RETRY_DELAYS = (timedelta(seconds=30), timedelta(minutes=5))   # after the 1st, 2nd failure
# A write transaction takes more mails only for this many seconds. SQLite has one write
# lock, which received mail, the outbox and the web view wait for. PostgreSQL locks rows:
# only the day's ticket counter row is shared (another new ticket waits for the commit),
# and a transaction costs three round trips (BEGIN, the pending check, COMMIT with its WAL
# flush) that 25 ms shared among only 2-3 mails there.
TRANSACTION_BUDGET = {"sqlite": 0.025, "postgresql": 0.1}
GROUP_BYTES = 8 * 1024 * 1024     # raw mail read and parsed at once, at most (or one mail)


@dataclass(frozen=True)
class Processed:
    mail_id: int
    outcome: str
    ticket_number: str | None
    reason: str
    from_address: str = ""      # as recorded for the operator's lists ("" if none)
    subject: str = ""


def lease_batch(db: Database, limit: int = 20, blobs: BlobStore | None = None) -> list[int]:
    """Claim up to `limit` due mails for this worker; mails that already used all their
    attempts (their worker died each time) are quarantined instead, with the From and
    Subject their header shows (read from `blobs` for a mail stored there)."""
    now = utcnow()
    leased: list[int] = []
    with db.write(durable=False) as session:
        for row in claim_due(session, _received, status="pending", now=now, limit=limit,
                             columns=("id", "attempts")):
            if row.attempts >= MAX_ATTEMPTS:
                shown = _shown(*_peek_stored(session, row.id, blobs))
                session.execute(update(_received).where(_received.c.id == row.id).values(
                    status="quarantined", outcome="quarantined", processed=now,
                    reason=f"processing did not finish in {row.attempts} attempts "
                           "(the worker stopped each time)", **shown))
                log.error("inbound %d: quarantined after %d unfinished attempts%s", row.id,
                          row.attempts, _which(shown))
                continue
            leased.append(row.id)
        if leased:      # one statement for the batch, not one per mail
            session.execute(update(_received).where(_received.c.id.in_(leased)).values(
                attempts=_received.c.attempts + 1, next_attempt=now + LEASE))
    return leased


def lease_ids(db: Database, mail_ids: list[int]) -> list[int]:
    """Lease these pending mails now (for `ingest` and `quarantine retry`, which process
    what they stored at once); mails another worker holds are left to it."""
    now = utcnow()
    leased: list[int] = []
    with db.write(durable=False) as session:
        for start in range(0, len(mail_ids), 500):
            rows = session.execute(
                select(_received.c.id, _received.c.attempts)
                .where(_received.c.id.in_(mail_ids[start:start + 500]),
                       _received.c.status == "pending")
                .with_for_update(skip_locked=True)).all()
            ids = [row.id for row in rows]
            if ids:
                session.execute(update(_received).where(_received.c.id.in_(ids)).values(
                    attempts=_received.c.attempts + 1, next_attempt=now + LEASE))
            leased += ids
    return sorted(leased)


@dataclass(frozen=True)
class _Leased:
    """A leased mail, understood before the write transaction starts."""

    id: int
    attempts: int
    understood: Understood | Outcome | None = None
    error: Exception | None = None       # understanding it failed (a bug): kept and counted
    from_address: str = ""               # what the operator's lists show (`_shown`)
    subject: str = ""


def process_leased(db: Database, stages: Stages, mail_id: int) -> Processed:
    """Process one leased mail; failures are recorded, never raised."""
    return process_batch(db, stages, [mail_id])[0]


def process_batch(db: Database, stages: Stages, mail_ids: Sequence[int]) -> list[Processed]:
    """Process leased mails (see the module's docstring); failures are recorded, never
    raised. One `Processed` per mail that still exists, in the order given."""
    results: list[Processed] = []
    for rows in _read_by_size(db, mail_ids):
        leased = [_understand(stages, row) for row in rows]
        done = len(results)
        while len(results) - done < len(leased):
            results += _apply_some(db, stages, leased[len(results) - done:])
    for result in results:
        log.info("inbound %d: %s %s (%s)%s", result.mail_id, result.outcome,
                 result.ticket_number or "-", result.reason,
                 _which({"from_address": result.from_address, "subject": result.subject})
                 if result.outcome in ("quarantined", "pending") else "")
    return results


def _apply_some(db: Database, stages: Stages, leased: list[_Leased], *,
                careful: bool = False) -> list[Processed]:
    """Apply mails in one write transaction until they are done, `TRANSACTION_BUDGET` is
    spent or received mail waits for the write lock (SQLite has only one); the results of
    the mails it took. The first pass runs without savepoints (two statements less per
    mail); when a mail fails in it, the transaction rolls back and is done again `careful`ly,
    each mail in a savepoint. A transaction that cannot commit is retried mail by mail."""
    results: list[Processed] = []
    try:
        with db.write() as session:
            pending = _still_pending(session, [mail.id for mail in leased])
            deadline = time.monotonic() + _budget(db)
            records: list[dict[str, object]] = []      # the outcomes, written together
            for mail in leased:
                if mail.id not in pending:
                    results.append(Processed(mail.id, "done", None, "already done"))
                elif careful:
                    results.append(_apply_in_savepoint(session, stages, mail))
                else:
                    results.append(_apply_directly(session, stages, mail, records))
                if time.monotonic() > deadline or _urgent_waiting(db):
                    break
            _record(session, records)
    except _FailedWithoutSavepoint as failed:
        log.info("inbound %d failed (%s); applying its batch again with savepoints",
                 failed.mail_id, failed.__cause__)
        return _apply_some(db, stages, leased, careful=True)
    except Exception as exc:
        taken = leased[:max(len(results), 1)]
        if len(taken) == 1:
            return [_record_failure(db, taken[0], exc)]
        log.warning("inbound: %d mails could not commit together (%s); one by one",
                    len(taken), exc)
        return [result for mail in taken
                for result in _apply_some(db, stages, [mail], careful=True)]
    return results


class _FailedWithoutSavepoint(Exception):
    """A mail failed in a pass without savepoints: its transaction must roll back whole."""

    def __init__(self, mail_id: int) -> None:
        super().__init__(f"inbound {mail_id} failed")
        self.mail_id = mail_id


def _apply_directly(session: Session, stages: Stages, mail: _Leased,
                    records: list[dict[str, object]]) -> Processed:
    """One mail without a savepoint of its own; a failure aborts the whole transaction.
    Its outcome is added to `records`, for the caller to write."""
    if mail.error is not None:       # understanding it failed: nothing was written for it
        return _recorded_failure(session, mail, mail.error)
    try:
        return _apply_one(session, stages, mail, records)
    except Exception as exc:
        raise _FailedWithoutSavepoint(mail.id) from exc


def _apply_one(session: Session, stages: Stages, mail: _Leased,
               records: list[dict[str, object]]) -> Processed:
    """Route and apply one understood mail in the caller's transaction; its outcome is
    added to `records` (`_record` writes them)."""
    if mail.error is not None:
        raise mail.error
    outcome = mail.understood
    assert outcome is not None
    if isinstance(outcome, Understood):
        outcome = route_and_apply(session, stages, outcome, mail.id)
    values = _record_values(mail, outcome)
    records.append(values)
    return Processed(mail.id, outcome.outcome, outcome.ticket_number, outcome.reason,
                     str(values["from_address"] or ""), str(values["subject"] or ""))


def _budget(db: Database) -> float:
    return TRANSACTION_BUDGET["sqlite" if db.is_sqlite else "postgresql"]


def _urgent_waiting(db: Database) -> bool:
    return db.turns is not None and db.turns.urgent_waiting()


def _read_by_size(db: Database, mail_ids: Sequence[int]) -> Iterator[list[Any]]:
    """The leased rows (with their raw mail), in groups of at most `GROUP_BYTES` (or one
    mail): a batch of large mails is read and parsed a few at a time, not all at once.
    The usual batch, one group, takes a single read transaction."""
    with db.read() as session:
        sizes = {row.id: row.size for row in session.execute(
            select(_received.c.id, _received.c.size).where(_received.c.id.in_(list(mail_ids))))}
        groups = _groups(mail_ids, sizes)
        first = _read_leased(session, groups[0]) if groups else []
    if groups:
        yield first
    for group in groups[1:]:
        with db.read() as session:
            rows = _read_leased(session, group)
        yield rows


def _groups(mail_ids: Sequence[int], sizes: dict[int, int]) -> list[list[int]]:
    """The mails in order, cut into groups of at most `GROUP_BYTES` (a larger mail, or an
    empty one, is a group or part of one like any other)."""
    groups: list[list[int]] = []
    total = 0
    for mail_id in mail_ids:
        size = sizes.get(mail_id, 0)
        if not groups or total + size > GROUP_BYTES:
            groups.append([])
            total = 0
        groups[-1].append(mail_id)
        total += size
    return groups


def _read_leased(session: Session, mail_ids: Sequence[int]) -> list[Any]:
    rows = session.execute(select(
        _received.c.id, _received.c.attempts, _received.c.raw, _received.c.size,
        _received.c.raw_sha256, _received.c.truncated_from, _received.c.left_out,
        _received.c.received,
        _received.c.source, _received.c.envelope_from, _received.c.envelope_to,
        _received.c.client_address)
        .where(_received.c.id.in_(list(mail_ids)))).all()
    by_id = {row.id: row for row in rows}
    return [by_id[mail_id] for mail_id in mail_ids if mail_id in by_id]


def _understand(stages: Stages, row: Any) -> _Leased:
    """Parse and classify one leased mail (no database). A failure is kept for the write
    transaction to count; a `RecursionError` would come back on every attempt, so that mail
    is quarantined at once. From and Subject are kept for the operator's lists: the
    parser's, or peeked at in the raw header when the parser did not get that far."""
    raw = b""
    try:
        raw = stored_raw(stages.blobs, row.raw, row.size, row.raw_sha256)
        understood = understand_stored(
            stages.addressbook, raw=raw, received=row.received,
            envelope_from=_envelope_from(row.source, row.envelope_from),
            envelope_to=row.envelope_to, truncated_from=row.truncated_from,
            left_out=left_out_files(row.left_out),
            hop_trusted=hop_trusted(row.source, row.client_address,
                                    stages.settings.inbound.trusted_relays))
    except RecursionError:
        from_address, subject = peek_from_subject(raw)
        log.error("inbound %d: quarantined: it nests too deeply for the parser "
                  "(RecursionError)%s", row.id, _which(_shown(from_address, subject)))
        return _Leased(row.id, row.attempts, Outcome(
            "quarantined", "parser limit: nested too deeply for the parser (RecursionError)",
            "parse-limit"), from_address=from_address, subject=subject)
    except Exception as exc:
        from_address, subject = peek_from_subject(raw)
        return _Leased(row.id, row.attempts, error=exc, from_address=from_address,
                       subject=subject)
    if isinstance(understood, Outcome):              # a parser limit: refused unparsed
        from_address, subject = peek_from_subject(raw)
    else:
        parsed = understood.parsed
        from_address = parsed.from_.address if parsed.from_ and parsed.from_.address else \
            collapse_whitespace(parsed.header("from"))[:1000]   # names nobody: as written
        subject = parsed.subject
    return _Leased(row.id, row.attempts, understood, from_address=from_address,
                   subject=subject)


def _shown(from_address: str, subject: str) -> dict[str, str | None]:
    """The `received_mail` columns the operator's lists show ("" is stored as NULL)."""
    return {"from_address": storable(from_address)[:1000] or None,
            "subject": storable(subject)[:1000] or None}


def _which(shown: dict[str, Any]) -> str:
    """", from X, subject Y" for a log line (nothing for what is unknown)."""
    return "".join(f", {label} {str(shown[key])[:200]!r}"
                   for key, label in (("from_address", "from"), ("subject", "subject"))
                   if shown.get(key))


def _peek_stored(session: Session, mail_id: int, blobs: BlobStore | None) -> tuple[str, str]:
    """From and Subject of a stored mail, read from its first `HEAD_BYTES` only."""
    row = session.execute(select(_received.c.raw, _received.c.size, _received.c.raw_sha256)
                          .where(_received.c.id == mail_id)).one()
    head = bytes(row.raw[:HEAD_BYTES]) if row.raw else b""
    if not head and row.size and blobs is not None:
        try:
            with blobs.open(row.raw_sha256) as handle:
                head = handle.read(HEAD_BYTES)
        except OSError:
            head = b""
    return peek_from_subject(head)


def _still_pending(session: Session, mail_ids: list[int]) -> set[int]:
    """Which of these are still pending, locked for this transaction (PostgreSQL)."""
    return set(session.execute(
        select(_received.c.id).where(_received.c.id.in_(mail_ids),
                                     _received.c.status == "pending")
        .with_for_update()).scalars())


def _apply_in_savepoint(session: Session, stages: Stages, mail: _Leased) -> Processed:
    try:
        with session.begin_nested():
            records: list[dict[str, object]] = []
            processed = _apply_one(session, stages, mail, records)
            _record(session, records)
            return processed
    except Exception as exc:
        return _recorded_failure(session, mail, exc)


def _recorded_failure(session: Session, mail: _Leased, exc: Exception) -> Processed:
    """Count the failed attempt in the open transaction (retry later, or quarantine)."""
    shown = _shown(mail.from_address, mail.subject)
    log.error("inbound %d: processing failed%s", mail.id, _which(shown), exc_info=exc)
    values = _failure_values(mail.attempts, _error_text(exc)) | shown
    session.execute(update(_received).where(_received.c.id == mail.id).values(**values))
    return Processed(mail.id, str(values.get("outcome", "pending")), None,
                     str(values["last_error"]), mail.from_address, mail.subject)


def _envelope_from(source: str, stored: str) -> str | None:
    """SMTP/LMTP know the reverse-path ("" is <>); for files and IMAP it is unknown."""
    return stored if source in ("smtp", "lmtp") else (stored or None)


_RECORD = update(_received).where(_received.c.id == bindparam("mail_id")).values(
    {name: bindparam(name) for name in ("status", "outcome", "reason", "rule", "ticket_id",
                                        "message_id", "from_address", "subject", "processed",
                                        "last_error")})


def _record(session: Session, records: list[dict[str, object]]) -> None:
    """Write the mails' outcomes (`_record_values`): one executemany, whatever their number."""
    if records:
        session.execute(_RECORD, records)


def _record_values(mail: _Leased, outcome: Outcome) -> dict[str, object]:
    """The row's outcome; From and Subject as the outcome has them, else as `_understand`
    read them (a quarantined mail's, a From that names nobody as written)."""
    return {
        "mail_id": mail.id,
        "status": "quarantined" if outcome.outcome == "quarantined" else "done",
        "outcome": outcome.outcome, "reason": storable(outcome.reason)[:4000],
        "rule": outcome.rule, "ticket_id": outcome.ticket_id,
        "message_id": storable(outcome.message_id or "")[:1000] or None,
        **_shown(outcome.from_address or mail.from_address, outcome.subject or mail.subject),
        "processed": utcnow(), "last_error": None}


def _error_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()[:4000]


def _failure_values(attempts: int, error: str) -> dict[str, object]:
    """A failed attempt: retried after a pause, or quarantined after `MAX_ATTEMPTS`."""
    if attempts >= MAX_ATTEMPTS:
        return {"status": "quarantined", "outcome": "quarantined", "processed": utcnow(),
                "reason": f"failed {attempts} times; last error: {error}", "last_error": error}
    return {"next_attempt": utcnow() + RETRY_DELAYS[min(attempts, 2) - 1], "last_error": error}


def _record_failure(db: Database, mail: _Leased, exc: Exception) -> Processed:
    """Record a failure in a transaction of its own (the mail's own one could not commit)."""
    error = _error_text(exc)
    shown = _shown(mail.from_address, mail.subject)
    log.error("inbound %d: processing failed%s: %s", mail.id, _which(shown), error)
    try:
        with db.write() as session:
            attempts = session.execute(select(_received.c.attempts)
                                       .where(_received.c.id == mail.id)).scalar_one()
            values = _failure_values(attempts, error) | shown
            session.execute(update(_received).where(_received.c.id == mail.id).values(**values))
    except Exception:
        # the database itself is failing: the lease expires and the mail is retried then
        log.exception("inbound %d: could not record the failure", mail.id)
        return Processed(mail.id, "pending", None, error, mail.from_address, mail.subject)
    return Processed(mail.id, str(values.get("outcome", "pending")), None, error,
                     mail.from_address, mail.subject)


def process_due(db: Database, stages: Stages, limit: int = 20) -> list[Processed]:
    """Lease and process one batch; the processed mails (empty when nothing was due)."""
    return process_batch(db, stages, lease_batch(db, limit, stages.blobs))


def run_worker(db: Database, stages: Stages, stop: threading.Event, wake: Bell | None = None,
               idle_poll: float = 0.5) -> None:
    """Process mail until `stop` is set; sleeps `idle_poll` seconds (or until the bell
    rings) when nothing is due. A database outage is waited out, not fatal."""
    log.info("inbound worker started")
    while not stop.is_set():
        try:
            done = process_due(db, stages)
        except Exception:
            log.exception("inbound worker: could not lease mail; retrying")
            done = []
        if not done:
            if wake is not None:
                wake.wait(idle_poll)
                if wake.ringer_gone:     # `serve` died (kill -9): do not outlive it
                    log.warning("inbound worker: the service that started it is gone")
                    break
            else:
                stop.wait(idle_poll)
    log.info("inbound worker stopped")
