"""The outbox: outgoing mail as rows in `outbound_mail`, and the drain that sends them.

In: `enqueue(session, OutgoingMail)` inside the caller's transaction. Out: the mail delivered
through a `Transport` by `drain` / `run_outbox`, its row `sent`, `failed` or `suppressed`
(recorded by `outbox_record.py`).

Guarantees:
- **Atomic with its cause.** `enqueue` only inserts, in the caller's transaction: the ticket
  change and its mail commit together or not at all.
- **Lease, send, record** (the pattern of `inbound/worker.py`):
  1. `lease_due`: one short transaction claims due `queued` rows (`FOR UPDATE SKIP LOCKED`
     on PostgreSQL), counts the attempt, moves `next_attempt` one `LEASE` (20 s,
     `store/leases.py`) ahead and names this process in `lease_holder`; other instances
     skip the rows until then. Several instances never send the same mail while the lease
     holds. A row whose previous lease ran out without a result is a takeover: logged, and
     counted through `on_takeover`.
  2. A mail queued as a recipe (`render.compose`: answers are not rendered in the
     transaction that caused them) is rendered now, outside any transaction, and its
     bytes stored in one short transaction before anything is sent (`_rendered`): the
     Message-ID and Date were fixed at queue time, so every attempt, and a second
     instance after a takeover, sends the bytes stored. A recipe that cannot be rendered
     (a template broken since) is a temporary failure: retried until its deadline.
  3. The transport sends the batch in chunks of `transport.batch_size` mails, with no
     transaction open: no row lock and no SQLite write lock is held during network or disk
     I/O. SMTP takes one mail at a time (one connection for the batch); Maildir the whole
     batch (each file fsynced, one fsync of `new/` for all). Meanwhile a heartbeat
     (`store/heartbeat.py`) renews the leases of the mails not yet recorded every 5 s, so a
     slow relay never lets another instance take a mail that is still being sent; a mail
     whose lease was lost before its turn is not sent.
  4. `record_results` (`outbox_record.py`): one short transaction per chunk records the
     results before the next chunk is sent (the usual all-"sent" chunk is a single UPDATE
     guarded by its (id, attempts) pairs, autocommitted on PostgreSQL): `sent`; back to
     `queued` with exponential backoff and jitter (about 1, 2, 4 … minutes, at most about
     an hour) for a temporary failure until the row's `deadline`, then `failed`; `failed`
     at once for a permanent one (`5xx`). The row's `attempts` value acts as the lease
     token: a result for a lease that ran out (another instance has the row now) is not
     recorded over the newer one's, except "sent", which is never forgotten. Once
     recorded (or handed back), a row is no longer renewed by the heartbeat.
- **At most one duplicate, never a lost mail.** A crash (or a database outage) between send
  and record leaves the rows `queued` with leases that expire (at most 20 s after the last
  heartbeat); another instance then sends them again. SMTP: that is at most the one mail
  in flight, since each result is recorded before the next mail goes out. Maildir: that
  is at most the chunk just written, and it replaces its own files (named after the row id
  and the Message-ID, `maildir.py`), so no mail appears twice in `new/` unless a reader
  had already moved it to `cur/` in between. The drain stops a batch as soon as a record
  fails and hands back the unsent rest, so no other mail of the batch is sent twice.
  Leases and results are committed with `db.write(durable=False, patient=True)` (no fsync:
  they survive any process crash, but a power failure or OS crash may forget the last
  second or so of them; such mails are sent once more, none is lost: over SMTP that may be
  every mail whose "sent" was forgotten, into a Maildir they replace their own files. On
  SQLite they wait for the write turn with fewer tries, see `store/priority.py`).
- **Per recipient.** When the relay accepts some recipients and refuses others, the row is
  split: it keeps the recipients that share the first outcome (sent, else temporary, else
  permanent), and a new row (same Message-ID and bytes) is made for each other outcome, so
  a retry only goes to the recipients who did not get the mail.
- **No automatic mail to dead addresses.** At lease time an acknowledgment, notice,
  rejection or FAQ answer whose every recipient is dead (`gateway/outbound/bouncing.py`) becomes
  `suppressed`, with the reason in `last_error`; `requeue_failed` takes it back.
- **In order.** A mail of a ticket waits while an earlier one to the same recipient is
  still queued (`gateway/outbound/ordering.py`): a retry never lets "pending" overtake "open".
- **Staff are told.** When a row becomes `failed`, `on_failed(session, mail, error)` runs in
  the recording transaction (under a savepoint: if it raises, the failure is still recorded
  and the error logged). It is never called for a `delivery-failed` mail (no loops).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import bindparam, insert, select, update
from sqlmodel import Session

from gateway.errors import TemporaryFailure
from gateway.observe import metrics
from gateway.observe.logs import OutageLog
from gateway.outbound import bouncing
from gateway.outbound.mail import OutgoingMail
from gateway.outbound.ordering import in_queue_order
from gateway.outbound.outbox_record import (
    Delivery,
    FailedHook,
    QueuedMail,
    fail_leased,
    record_result,
    record_results,
    update_leased,
)
from gateway.outbound.render import MailRenderer, RenderError
from gateway.outbound.transport import DeliveryResult, Envelope, Transport
from gateway.store.claims import claim_due
from gateway.store.db import Database, note_mail_queued
from gateway.store.heartbeat import Heartbeat
from gateway.store.leases import LEASE, TakeoverHook, holder_id, note_takeovers
from gateway.store.models import OutboundMail, table_of, utcnow
from gateway.tickets.ticket import remember_message_ids, storable

log = logging.getLogger(__name__)
__all__ = ["Delivery", "QueuedMail", "drain", "enqueue", "enqueue_many", "lease_due",
           "message_bytes",
           "record_result", "record_results", "release", "requeue_failed", "run_outbox"]

_outbound = table_of(OutboundMail)
_INSERT = insert(_outbound).returning(_outbound.c.id)
_INSERT_MANY = insert(_outbound)      # executemany: compiled once, whatever the number of rows
# a rendered recipe's bytes, stored in its place while our lease holds (executemany): a row
# has its bytes or the recipe for them, never both (a password-token mail's token is kept
# once, not twice)
_STORE_RENDERED = update(_outbound).where(
    _outbound.c.id == bindparam("mail_id"), _outbound.c.attempts == bindparam("lease"),
    _outbound.c.status == "queued").values(raw=bindparam("rendered"), recipe=None)

DEFAULT_DEADLINE = timedelta(days=5)    # RFC 5321 §4.5.4.1: give up after 4-5 days
# stop sending a batch this long after leasing it and hand the rest back, so that other
# instances share the work when the relay is slow (the heartbeat keeps the leases meanwhile)
SEND_BUDGET = timedelta(minutes=1)
BATCH = 20          # mails leased at once, or the transport's batch_size if that is larger


class Flag(Protocol):
    """`threading.Event` or `multiprocessing.Event`."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...

    def clear(self) -> None: ...


class Wakeup(Protocol):
    """What the idle outbox sleeps on: a `threading.Event`, or the doorbell `serve` rings
    when mail was queued (`inbound/doorbell.Bell`)."""

    def wait(self, timeout: float) -> bool: ...

    def clear(self) -> None: ...


# -- enqueue ----------------------------------------------------------------------------------

def enqueue(session: Session, mail: OutgoingMail, *, deadline: timedelta = DEFAULT_DEADLINE,
            now: datetime | None = None) -> int:
    """Store `mail` for sending in the caller's transaction; returns the outbox id. Its
    Message-ID is remembered for its ticket, so replies to it thread."""
    now = now or utcnow()
    mail_id: int = session.execute(_INSERT, _row(mail, now, deadline)).scalar_one()
    note_mail_queued(session)
    if mail.ticket_id is not None:
        remember_message_ids(session, mail.ticket_id, [mail.message_id])
    return mail_id


def enqueue_many(session: Session, mails: Sequence[OutgoingMail], *,
                 deadline: timedelta = DEFAULT_DEADLINE, now: datetime | None = None) -> None:
    """`enqueue` for the mails one event causes (an acknowledgment and the staff notices):
    one executemany for the rows and one per ticket for their Message-IDs, not two
    statements per mail."""
    if not mails:
        return
    now = now or utcnow()
    rows = [_row(mail, now, deadline) for mail in mails]
    session.execute(_INSERT_MANY, rows if len(rows) > 1 else rows[0])
    note_mail_queued(session)
    by_ticket: dict[int, list[str]] = {}
    for mail in mails:
        if mail.ticket_id is not None:
            by_ticket.setdefault(mail.ticket_id, []).append(mail.message_id)
    for ticket_id, message_ids in by_ticket.items():
        remember_message_ids(session, ticket_id, message_ids)


def _row(mail: OutgoingMail, now: datetime, deadline: timedelta) -> dict[str, Any]:
    if deadline <= timedelta(0):
        raise ValueError("the deadline must be in the future")
    return {
        "created": now, "ticket_id": mail.ticket_id, "event": mail.event,
        "envelope_from": mail.envelope_from, "recipients": list(mail.recipients),
        "message_id": mail.message_id, "raw": mail.raw, "recipe": mail.recipe,
        "status": "queued", "attempts": 0,
        "last_error": None, "next_attempt": now, "deadline": now + deadline, "sent": None,
    }


def message_bytes(row: Any, renderer: MailRenderer) -> bytes:
    """An outbound row's bytes as sent, or for a mail not rendered yet as they will be
    (rendered now from its recipe: the same bytes, unless a template changes meanwhile).
    `row`: anything with `raw`, `recipe` and `message_id` (a row of `outbound_mail`)."""
    if row.raw is not None:
        return bytes(row.raw)
    return renderer.finish(row.recipe or "", row.message_id)


def requeue_failed(session: Session, mail_ids: Sequence[int] | None, *,
                   deadline: timedelta = DEFAULT_DEADLINE,
                   now: datetime | None = None) -> list[int]:
    """Put failed or suppressed mail (these ids, or all with None) back into the queue: due
    now, attempts reset, a new deadline. The last error is kept until the next attempt.
    Returns the ids."""
    now = now or utcnow()
    statement = select(_outbound.c.id).where(_outbound.c.status.in_(("failed", "suppressed")))
    if mail_ids is not None:
        statement = statement.where(_outbound.c.id.in_(list(mail_ids)))
    ids = sorted(session.execute(statement).scalars())
    for start in range(0, len(ids), 500):
        session.execute(update(_outbound).where(_outbound.c.id.in_(ids[start:start + 500]))
                        .values(status="queued", attempts=0, next_attempt=now,
                                deadline=now + deadline, sent=None, lease_holder=None))
    return ids


# -- lease ------------------------------------------------------------------------------------

def lease_due(db: Database, *, limit: int = BATCH, mail_ids: Sequence[int] | None = None,
              on_failed: FailedHook | None = None, on_takeover: TakeoverHook | None = None,
              now: datetime | None = None) -> list[QueuedMail]:
    """Claim up to `limit` due queued mails (or these queued ids, due or not) for this
    instance. Mails that were tried before and are a lease past their deadline (e.g. every
    attempt crashed) are marked failed instead of being sent once more. Takeovers of due
    rows whose lease ran out are logged and passed to `on_takeover`."""
    now = now or utcnow()
    leased: list[QueuedMail] = []
    with db.write(durable=False, patient=True) as session:
        if mail_ids is None:
            rows: Sequence[Any] = claim_due(session, _outbound, status="queued", now=now,
                                            limit=limit)
        else:
            rows = session.execute(
                select(_outbound).where(_outbound.c.id.in_(list(mail_ids)),
                                        _outbound.c.status == "queued")
                .order_by(_outbound.c.id).with_for_update(skip_locked=True)).all()
        note_takeovers("outbound", [row for row in rows if row.next_attempt <= now],
                       on_takeover)
        for row in rows:
            mail = _queued(row)
            if mail.attempts > 0 and now >= mail.deadline + LEASE:
                error = (f"not delivered by the deadline {mail.deadline:%Y-%m-%d %H:%M} UTC; "
                         f"last error: {mail.last_error or 'the last attempt did not finish'}")
                fail_leased(session, mail, error, on_failed, now)
                continue
            leased.append(replace(mail, attempts=mail.attempts + 1))
        leased = _hold_back_dead(session, leased, now)
        leased = in_queue_order(session, leased)      # never overtake an earlier mail
        if leased:
            session.execute(update(_outbound)
                            .where(_outbound.c.id.in_([m.id for m in leased]))
                            .values(attempts=_outbound.c.attempts + 1,
                                    next_attempt=now + LEASE, lease_holder=holder_id()))
    return leased


def _hold_back_dead(session: Session, mails: list[QueuedMail],
                    now: datetime) -> list[QueuedMail]:
    """Mark automatic mails to dead addresses `suppressed` (see `gateway/outbound/bouncing.py`);
    the mails still to send."""
    automatic = [m for m in mails if m.event in bouncing.SUPPRESSED_EVENTS]
    if not automatic:
        return mails
    dead = bouncing.dead_recipients(session, (r for m in automatic for r in m.recipients))
    if not dead:
        return mails
    to_send = []
    for mail in mails:
        holding = bouncing.held_back(mail.event, mail.recipients, dead)
        if holding is None:
            to_send.append(mail)
            continue
        note = (f"not sent: {'; '.join(d.explanation() for d in holding)}. A mail from the "
                "address or `ticketgw bounces clear ADDRESS` ends this; then "
                "`ticketgw outbox retry ID` sends it")
        session.execute(update(_outbound).where(_outbound.c.id == mail.id).values(
            status="suppressed", next_attempt=now, last_error=storable(note)[:4000],
            lease_holder=None))
        log.info("outbox %d %s: suppressed (%s)", mail.id, mail.message_id, note)
        metrics.count_outbound("suppressed")
    return to_send


def release(db: Database, mails: Sequence[QueuedMail]) -> None:
    """Hand leased mails back unsent: due again now, the attempt not counted."""
    if not mails:
        return
    try:
        with db.write(durable=False, patient=True) as session:
            for mail in mails:
                update_leased(session, mail, attempts=mail.attempts - 1, next_attempt=utcnow())
    except TemporaryFailure as exc:     # the database is away: expected, no traceback
        log.warning("outbox: could not hand back %d leased mails (%s); their lease expires",
                    len(mails), exc)
    except Exception:
        log.exception("outbox: could not hand back %d leased mails; their lease expires",
                      len(mails))


def _queued(row: Any) -> QueuedMail:
    return QueuedMail(
        id=row.id, event=row.event, envelope_from=row.envelope_from,
        recipients=tuple(row.recipients), message_id=row.message_id, raw=row.raw,
        ticket_id=row.ticket_id, attempts=row.attempts, created=row.created,
        deadline=row.deadline or row.created + DEFAULT_DEADLINE, last_error=row.last_error,
        recipe=row.recipe)


# -- drain ------------------------------------------------------------------------------------

def lease_size(transport: Transport) -> int:
    """How many mails `drain` leases at once for this transport: `BATCH`, or the whole
    batch the transport writes in one go (a Maildir: 100 files, one directory fsync)."""
    return max(BATCH, transport.batch_size)


def drain(db: Database, transport: Transport, *, renderer: MailRenderer,
          limit: int | None = None, on_failed: FailedHook | None = None,
          stop: Flag | None = None, mail_ids: Sequence[int] | None = None,
          on_takeover: TakeoverHook | None = None) -> list[Delivery]:
    """Lease one batch, render the mails that are still a recipe (`renderer`) and store
    their bytes, then send it in chunks of `transport.batch_size` mails, recording each
    chunk's results in one transaction before the next chunk is sent, and renewing the
    leases of the mails not yet recorded meanwhile; the deliveries (empty when nothing was
    due). Sending stops early (the rest handed back unsent) when `stop` is set, when the
    batch has taken `SEND_BUDGET`, or when results cannot be recorded. A mail whose lease
    was lost before its turn (another instance took it over) is left to that instance.
    `limit`: at most this many mails (default `lease_size(transport)`)."""
    leased = lease_due(db, limit=limit or lease_size(transport), mail_ids=mail_ids,
                       on_failed=on_failed, on_takeover=on_takeover)
    started = time.monotonic()
    deliveries: list[Delivery] = []
    size = max(1, transport.batch_size)
    try:
        with Heartbeat(db, "outbound", {m.id: m.attempts for m in leased}) as heartbeat:
            leased, unrendered = _rendered(db, renderer, leased)
            if unrendered:
                deliveries += record_results(db, unrendered, on_failed=on_failed)
                heartbeat.finished(m.id for m, _ in unrendered)
            for index in range(0, len(leased), size):
                if ((stop is not None and stop.is_set())
                        or time.monotonic() - started > SEND_BUDGET.total_seconds()):
                    heartbeat.finished(m.id for m in leased[index:])
                    release(db, leased[index:])
                    break
                chunk = _still_ours(leased[index:index + size], heartbeat)
                if not chunk:
                    continue
                results = _send(transport, chunk)
                try:
                    deliveries += record_results(db, list(zip(chunk, results, strict=True)),
                                                 on_failed=on_failed)
                except Exception as exc:
                    # sent (or not) but not recorded: after the lease they are sent again
                    # (a Maildir replaces its own files). Stop here so that no further mail
                    # of the batch risks the same. A database outage is expected now and
                    # then: one line; anything else is a bug.
                    log.log(logging.WARNING if isinstance(exc, TemporaryFailure)
                            else logging.ERROR,
                            "outbox: could not record the results of %d mail(s) (%s); "
                            "retried when their leases end: %s", len(chunk),
                            ", ".join(f"{m.id} {m.message_id}: {r.outcome}"
                                      for m, r in zip(chunk, results, strict=True)),
                            exc, exc_info=not isinstance(exc, TemporaryFailure))
                    heartbeat.finished(m.id for m in leased[index:])  # their leases run out
                    release(db, leased[index + size:])
                    break
                heartbeat.finished(m.id for m in chunk)
    finally:
        transport.close()
    return deliveries


def _rendered(db: Database, renderer: MailRenderer, mails: list[QueuedMail]
              ) -> tuple[list[QueuedMail], list[tuple[QueuedMail, DeliveryResult]]]:
    """Render the leased mails that are still a recipe, outside any transaction, and store
    their bytes in one short transaction (while the lease holds) before any is sent: every
    later attempt sends what is stored. Returns the mails ready to send (with their
    bytes), and those that could not be rendered with a temporary failure to record (a
    template broken since they were queued: fixed, they go out; else they fail at their
    deadline, and the staff are told). Raises when the bytes cannot be stored (nothing is
    sent then; the leases run out)."""
    if all(mail.raw is not None for mail in mails):
        return mails, []
    ready: list[QueuedMail] = []
    failed: list[tuple[QueuedMail, DeliveryResult]] = []
    rendered: list[dict[str, Any]] = []
    texts: dict[str, tuple[str, str]] = {}      # a staff notice's texts, once per batch
    for mail in mails:
        if mail.raw is not None:
            ready.append(mail)
            continue
        try:
            raw = renderer.finish(mail.recipe or "", mail.message_id, texts=texts)
        except Exception as exc:     # this mail only: the others of the batch go on
            # a template or recipe problem is the admin's to fix (one line); anything else
            # is a bug (with its traceback)
            expected = isinstance(exc, RenderError)
            log.log(logging.ERROR, "outbox %d %s: cannot be rendered: %s", mail.id,
                    mail.message_id, exc, exc_info=not expected)
            failed.append((mail, DeliveryResult("temporary", None,
                                                f"could not be rendered: {exc}"[:1000])))
            continue
        ready.append(replace(mail, raw=raw))
        rendered.append({"mail_id": mail.id, "lease": mail.attempts, "rendered": raw})
    if rendered:
        with db.write(durable=False, patient=True) as session:
            session.execute(_STORE_RENDERED, rendered)
    return ready, failed


def _still_ours(mails: list[QueuedMail], heartbeat: Heartbeat) -> list[QueuedMail]:
    """The mails whose lease the heartbeat has not found lost (taken over) meanwhile."""
    ours = []
    for mail in mails:
        if heartbeat.is_lost(mail.id):
            log.warning("outbox %d %s: the lease was lost before it was sent; left to the "
                        "instance that has it now", mail.id, mail.message_id)
        else:
            ours.append(mail)
    return ours


def _send(transport: Transport, mails: list[QueuedMail]) -> list[DeliveryResult]:
    try:
        results = transport.send_batch([_envelope(mail) for mail in mails])
        if len(results) != len(mails):
            raise RuntimeError(f"{len(results)} results for {len(mails)} mails")
        return results
    except Exception as exc:   # a transport bug: keep the mails, retry them later
        log.exception("outbox: the transport failed sending %s",
                      ", ".join(f"{m.id} {m.message_id}" for m in mails))
        return [DeliveryResult("temporary", None, f"transport error: {exc!r}"[:1000])] * len(mails)


def _envelope(mail: QueuedMail) -> Envelope:
    """The mail for the transport, with a key that is the same on every attempt (the row
    id) and differs between databases that share a Maildir (the Message-ID's digest)."""
    digest = hashlib.sha256(mail.message_id.encode("utf-8", "surrogateescape")).hexdigest()
    if mail.raw is None:          # `_rendered` gave every mail it lets through its bytes
        raise ValueError(f"outbox {mail.id}: not rendered")
    return Envelope(f"ticketgw.{mail.id}.{digest[:24]}", mail.envelope_from,
                    mail.recipients, mail.raw)


def run_outbox(db: Database, stop: Flag, transport: Transport, wake: Wakeup | None = None,
               idle_poll: float = 1.0, *, renderer: MailRenderer,
               on_failed: FailedHook | None = None,
               limit: int | None = None, on_takeover: TakeoverHook | None = None) -> None:
    """Drain the outbox until `stop` is set; sleeps `idle_poll` seconds (or until `wake`)
    when nothing is due. A database outage is waited out, not fatal. Set `wake` after
    `stop` for a prompt exit."""
    log.info("outbox started (%r)", transport)
    outage = OutageLog(log, "outbox: the database")
    while not stop.is_set():
        try:
            done = drain(db, transport, renderer=renderer, limit=limit, on_failed=on_failed,
                         stop=stop, on_takeover=on_takeover)
            outage.recovered()
        except TemporaryFailure as exc:       # an outage: waited out, one line
            outage.failed(exc)
            done = []
        except Exception:
            log.exception("outbox: could not lease mail; retrying")
            done = []
        if not done:
            if wake is not None:
                wake.wait(idle_poll)
                wake.clear()
                if getattr(wake, "ringer_gone", False):   # a doorbell whose ringers all ended
                    log.warning("outbox: the service that rings it is gone; stopping")
                    break
            else:
                stop.wait(idle_poll)
    log.info("outbox stopped")
