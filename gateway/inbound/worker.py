"""The inbound worker: takes stored mail from the database and runs the pipeline on it.

How work is taken, so that no mail is lost, none is processed twice at once, and one bad mail
never blocks the queue:
1. `lease_batch` (`leasing.py`): one short transaction claims due `pending` rows (`FOR UPDATE
   SKIP LOCKED` on PostgreSQL), counts the attempt and pushes `next_attempt` a lease (20 s,
   `store/leases.py`) into the future, naming this process in `lease_holder`; others skip them
   until then. The attempt is counted *before* processing, so a mail that crashes the
   worker process is not retried for ever. A row whose previous lease ran out without a
   result is a takeover: logged, and counted through `on_takeover`.
2. `process_batch`: while it runs, a heartbeat (`store/heartbeat.py`) renews the leases
   every 5 s, so a long mail (a 50 MB parse) keeps them. The leased mails are read and
   parsed, and their attachments put into the blob store (`pipeline.store_attachments`),
   outside any write transaction (neither CPU nor disk work may hold SQLite's write lock
   while received mail waits); then one write transaction routes, applies and records
   the mails. What routing and applying ask the database for every mail (already an
   article? a customer? a bounce record to clear?) is asked once for the transaction's
   mails first
   (`pipeline.before_applying`). A mail that fails rolls back alone: the first pass has
   no savepoints (they cost two statements per mail), and when a mail fails in it, the
   transaction is rolled back and done again with a savepoint per mail. The failure is
   recorded in that transaction, and after `MAX_ATTEMPTS` the mail is quarantined while
   the rest of the queue moves on. Each mail's changes (ticket,
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
root). A worker that dies mid-lease loses nothing: its mails become due again when the lease
ends, at most 20 s after its last heartbeat, and another instance takes them over. The
attempt count is the lease token: a mail's result (or failure) is recorded only while the
row still has the count this worker leased it with, so work whose lease was lost (taken
over after a heartbeat could not reach the database) is never recorded over the newer lease.
Leases are committed with `db.write(durable=False)`: a power failure may forget a lease (and
its attempt count), which only repeats work; the mails' results are written durably.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlmodel import Session

from gateway.errors import TemporaryFailure
from gateway.inbound.doorbell import Bell
from gateway.inbound.hops import hop_trusted
from gateway.inbound.intake import left_out_files, stored_raw
from gateway.inbound.leasing import (
    MAX_ATTEMPTS,
    lease_batch,
    lease_ids,
    shown_columns,
    which_mail,
)
from gateway.mail.mime_text import collapse_whitespace
from gateway.mail.peek import peek_from_subject
from gateway.observe import metrics
from gateway.observe.logs import OutageLog, mail_context
from gateway.pipeline import (
    Outcome,
    Stages,
    Understood,
    before_applying,
    route_and_apply,
    store_attachments,
    understand_stored,
)
from gateway.store.db import Database
from gateway.store.heartbeat import Heartbeat
from gateway.store.leases import TakeoverHook
from gateway.store.models import ReceivedMail, table_of, utcnow
from gateway.tickets.ticket import storable

log = logging.getLogger(__name__)

_received = table_of(ReceivedMail)
__all__ = ["MAX_ATTEMPTS", "Processed", "lease_batch", "lease_ids", "process_batch",
           "process_due", "process_leased", "run_worker"]
RETRY_DELAYS = (timedelta(seconds=30), timedelta(minutes=5))   # after the 1st, 2nd failure
# A write transaction takes more mails only for this many seconds. SQLite has one write
# lock, which received mail, the outbox and the web view wait for. PostgreSQL locks rows:
# only the day's ticket counter row is shared (another new ticket waits for the commit),
# and a transaction costs three round trips (BEGIN, the pending check, COMMIT with its WAL
# flush) that 25 ms shared among only 2-3 mails there.
TRANSACTION_BUDGET = {"sqlite": 0.025, "postgresql": 0.1}
GROUP_BYTES = 8 * 1024 * 1024     # raw mail read and parsed at once, at most (or one mail)
QUIET_OUTCOMES = ("created", "appended", "ignored", "done")   # logged at DEBUG, one per mail


@dataclass(frozen=True)
class Processed:
    mail_id: int
    outcome: str
    ticket_number: str | None
    reason: str
    from_address: str = ""      # as recorded for the operator's lists ("" if none)
    subject: str = ""
    rule: str | None = None     # the routing rule of the outcome, if any
    failed: bool = False        # the attempt failed with an error (retried or quarantined)
    message_id: str | None = None


@dataclass(frozen=True)
class _Leased:
    """A leased mail, understood before the write transaction starts."""

    id: int
    attempts: int
    understood: Understood | Outcome | None = None
    error: Exception | None = None       # understanding it failed (a bug): kept and counted
    from_address: str = ""               # what the operator's lists show (`shown_columns`)
    subject: str = ""


def process_leased(db: Database, stages: Stages, mail_id: int) -> Processed:
    """Process one leased mail; failures are recorded, never raised."""
    return process_batch(db, stages, [mail_id])[0]


def process_batch(db: Database, stages: Stages, mail_ids: Sequence[int]) -> list[Processed]:
    """Process leased mails (see the module's docstring); failures are recorded, never
    raised. One `Processed` per mail that still exists, in the order given. Their leases
    are renewed by a heartbeat until each has its result."""
    results: list[Processed] = []
    received_at: dict[int, datetime] = {}
    groups, tokens, rows = _read_first(db, mail_ids)
    with Heartbeat(db, "inbound", tokens) as heartbeat:
        for index, group in enumerate(groups):
            if index:
                with db.read() as session:
                    rows = _read_leased(session, group)
            received_at.update((row.id, row.received) for row in rows)
            leased = [_understand(stages, row, tokens[row.id]) for row in rows]
            done = len(results)
            while len(results) - done < len(leased):
                results += _apply_some(db, stages, leased[len(results) - done:])
            heartbeat.finished(group)
    for result in results:
        # a line per mail at INFO only for what an operator acts on (issue #15)
        log.log(logging.DEBUG if result.outcome in QUIET_OUTCOMES else logging.INFO,
                "inbound %d: %s %s (%s)%s", result.mail_id, result.outcome,
                result.ticket_number or "-", result.reason,
                which_mail({"from_address": result.from_address, "subject": result.subject})
                if result.outcome in ("quarantined", "pending") else "",
                extra={"inbound_id": result.mail_id, "message_id": result.message_id})
    _count(results, received_at)
    return results


def _count(results: list[Processed], received_at: dict[int, datetime]) -> None:
    """The committed results in the metrics (a mail already done is not counted again)."""
    now = utcnow()
    for result in results:
        if result.failed:
            metrics.count_processing_failure()
        if result.outcome in metrics.OUTCOMES and result.mail_id in received_at:
            metrics.count_processed(result.outcome, result.rule,
                                    metrics.seconds_between(received_at[result.mail_id], now))


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
            ours, lost = _still_ours(session, leased)
            before_applying(session, [mail.understood for mail in leased if mail.id in ours
                                      and isinstance(mail.understood, Understood)])
            deadline = time.monotonic() + _budget(db)
            records: list[dict[str, object]] = []      # the outcomes, written together
            for mail in leased:
                if mail.id in lost:
                    log.warning("inbound %d: the lease was lost (another instance leased it "
                                "again); its result is left to that one", mail.id)
                    results.append(Processed(mail.id, "pending", None, "lease lost"))
                elif mail.id not in ours:
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
        with mail_context(mail.id, outcome.parsed.message_id):
            outcome = route_and_apply(session, stages, outcome, mail.id)
    values = _record_values(mail, outcome)
    records.append(values)
    return Processed(mail.id, outcome.outcome, outcome.ticket_number, outcome.reason,
                     str(values["from_address"] or ""), str(values["subject"] or ""),
                     rule=outcome.rule, message_id=outcome.message_id)


def _budget(db: Database) -> float:
    return TRANSACTION_BUDGET["sqlite" if db.is_sqlite else "postgresql"]


def _urgent_waiting(db: Database) -> bool:
    return db.turns is not None and db.turns.urgent_waiting()


def _read_first(db: Database, mail_ids: Sequence[int]
                ) -> tuple[list[list[int]], dict[int, int], list[Any]]:
    """The mails cut into groups of at most `GROUP_BYTES` (or one mail), so that a batch
    of large mails is read and parsed a few at a time; each mail's lease token (its
    attempt count now); and the first group's rows (with their raw mail). The usual batch,
    one group, takes this single read transaction."""
    with db.read() as session:
        found = session.execute(select(_received.c.id, _received.c.size, _received.c.attempts)
                                .where(_received.c.id.in_(list(mail_ids)))).all()
        groups = _groups(mail_ids, {row.id: row.size for row in found})
        first = _read_leased(session, groups[0]) if groups else []
    return groups, {row.id: row.attempts for row in found}, first


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


def _understand(stages: Stages, row: Any, token: int) -> _Leased:
    """Parse and classify one leased mail (no database). A failure is kept for the write
    transaction to count; a `RecursionError` would come back on every attempt, so that mail
    is quarantined at once. From and Subject are kept for the operator's lists: the
    parser's, or peeked at in the raw header when the parser did not get that far."""
    raw = b""
    try:
        raw = stored_raw(stages.blobs, row.raw, row.size, row.raw_sha256)
        with mail_context(row.id):
            understood = understand_stored(
                stages.addressbook, raw=raw, received=row.received,
                envelope_from=_envelope_from(row.source, row.envelope_from),
                envelope_to=row.envelope_to, truncated_from=row.truncated_from,
                left_out=left_out_files(row.left_out),
                hop_trusted=hop_trusted(row.source, row.client_address,
                                        stages.settings.inbound.trusted_relays))
            if isinstance(understood, Understood):     # outside the write transaction
                understood = store_attachments(stages.blobs, understood)
    except RecursionError:
        from_address, subject = peek_from_subject(raw)
        log.error("inbound %d: quarantined: it nests too deeply for the parser "
                  "(RecursionError)%s", row.id, which_mail(shown_columns(from_address, subject)))
        return _Leased(row.id, token, Outcome(
            "quarantined", "parser limit: nested too deeply for the parser (RecursionError)",
            "parse-limit"), from_address=from_address, subject=subject)
    except Exception as exc:
        from_address, subject = peek_from_subject(raw)
        return _Leased(row.id, token, error=exc, from_address=from_address,
                       subject=subject)
    if isinstance(understood, Outcome):              # a parser limit: refused unparsed
        from_address, subject = peek_from_subject(raw)
    else:
        parsed = understood.parsed
        from_address = parsed.from_.address if parsed.from_ and parsed.from_.address else \
            collapse_whitespace(parsed.header("from"))[:1000]   # names nobody: as written
        subject = parsed.subject
    return _Leased(row.id, token, understood, from_address=from_address,
                   subject=subject)


def _still_ours(session: Session, leased: Sequence[_Leased]) -> tuple[set[int], set[int]]:
    """Which of these mails are still pending under the lease they came with (ours), and
    which are pending under a newer one (lost); locked for this transaction (PostgreSQL)."""
    tokens = {mail.id: mail.attempts for mail in leased}
    pending = session.execute(
        select(_received.c.id, _received.c.attempts)
        .where(_received.c.id.in_(list(tokens)), _received.c.status == "pending")
        .with_for_update()).all()
    ours = {row.id for row in pending if row.attempts == tokens[row.id]}
    return ours, {row.id for row in pending} - ours


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
    shown = shown_columns(mail.from_address, mail.subject)
    log.error("inbound %d: processing failed%s", mail.id, which_mail(shown), exc_info=exc,
              extra={"inbound_id": mail.id})
    values = _failure_values(mail.attempts, _error_text(exc)) | shown
    session.execute(update(_received).where(_received.c.id == mail.id).values(**values))
    return Processed(mail.id, str(values.get("outcome", "pending")), None,
                     str(values["last_error"]), mail.from_address, mail.subject, failed=True)


def _envelope_from(source: str, stored: str) -> str | None:
    """SMTP/LMTP know the reverse-path ("" is <>); for files and IMAP it is unknown."""
    return stored if source in ("smtp", "lmtp") else (stored or None)


_RECORD = update(_received).where(_received.c.id == bindparam("mail_id")).values(
    {**{name: bindparam(name) for name in ("status", "outcome", "reason", "rule", "ticket_id",
                                           "message_id", "from_address", "subject",
                                           "processed", "last_error")},
     "lease_holder": None})


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
        **shown_columns(outcome.from_address or mail.from_address, outcome.subject or mail.subject),
        "processed": utcnow(), "last_error": None}


def _error_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()[:4000]


def _failure_values(attempts: int, error: str) -> dict[str, object]:
    """A failed attempt: retried after a pause, or quarantined after `MAX_ATTEMPTS`."""
    if attempts >= MAX_ATTEMPTS:
        return {"status": "quarantined", "outcome": "quarantined", "processed": utcnow(),
                "reason": f"failed {attempts} times; last error: {error}", "last_error": error,
                "lease_holder": None}
    return {"next_attempt": utcnow() + RETRY_DELAYS[min(attempts, 2) - 1], "last_error": error,
            "lease_holder": None}


def _record_failure(db: Database, mail: _Leased, exc: Exception) -> Processed:
    """Record a failure in a transaction of its own (the mail's own one could not commit),
    unless the lease it came with was lost meanwhile."""
    error = _error_text(exc)
    shown = shown_columns(mail.from_address, mail.subject)
    # the database refusing the commit is expected now and then: a warning, no traceback
    log.log(logging.WARNING if isinstance(exc, TemporaryFailure) else logging.ERROR,
            "inbound %d: processing failed%s: %s", mail.id, which_mail(shown), error,
            extra={"inbound_id": mail.id})
    try:
        with db.write() as session:
            ours = (_received.c.id == mail.id, _received.c.status == "pending",
                    _received.c.attempts == mail.attempts)
            if session.execute(select(_received.c.id).where(*ours)).first() is None:
                log.warning("inbound %d: the lease was lost; the failure is not recorded",
                            mail.id)
                return Processed(mail.id, "pending", None, error, mail.from_address,
                                 mail.subject)
            values = _failure_values(mail.attempts, error) | shown
            session.execute(update(_received).where(*ours).values(**values))
    except TemporaryFailure as failure:
        # the database itself is failing: the lease expires and the mail is retried then
        log.warning("inbound %d: could not record the failure: %s", mail.id, failure)
        return Processed(mail.id, "pending", None, error, mail.from_address, mail.subject)
    except Exception:
        log.exception("inbound %d: could not record the failure", mail.id)
        return Processed(mail.id, "pending", None, error, mail.from_address, mail.subject)
    return Processed(mail.id, str(values.get("outcome", "pending")), None, error,
                     mail.from_address, mail.subject, failed=True)


def process_due(db: Database, stages: Stages, limit: int = 20, *,
                on_takeover: TakeoverHook | None = None) -> list[Processed]:
    """Lease and process one batch; the processed mails (empty when nothing was due)."""
    return process_batch(db, stages, lease_batch(db, limit, stages.blobs,
                                                 on_takeover=on_takeover))


def run_worker(db: Database, stages: Stages, stop: threading.Event, wake: Bell | None = None,
               idle_poll: float = 0.5, *, on_takeover: TakeoverHook | None = None) -> None:
    """Process mail until `stop` is set; sleeps `idle_poll` seconds (or until the bell
    rings) when nothing is due. A database outage is waited out, not fatal."""
    log.info("inbound worker started")
    outage = OutageLog(log, "inbound worker: the database")
    while not stop.is_set():
        try:
            done = process_due(db, stages, on_takeover=on_takeover)
            outage.recovered()
        except TemporaryFailure as exc:       # an outage: waited out, one line
            outage.failed(exc)
            done = []
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
