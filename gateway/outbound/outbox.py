"""The outbox: outgoing mail as rows in `outbound_mail`, and the drain that sends them.

In: `enqueue(session, OutgoingMail)` inside the caller's transaction. Out: the mail delivered
through a `Transport` by `drain` / `run_outbox`, its row `sent`, `failed` or `suppressed`.

Guarantees:
- **Atomic with its cause.** `enqueue` only inserts, in the caller's transaction: the ticket
  change and its mail commit together or not at all.
- **Lease, send, record** (the pattern of `inbound/worker.py`):
  1. `lease_due`: one short transaction claims due `queued` rows (`FOR UPDATE SKIP LOCKED`
     on PostgreSQL), counts the attempt and moves `next_attempt` one `LEASE` ahead; other
     instances skip the rows until then. Several instances never send the same mail while
     the lease holds.
  2. The transport sends each mail with no transaction open: no row lock and no SQLite write
     lock is held during network I/O.
  3. `record_result`: one short transaction per mail records the result: `sent`; back to
     `queued` with exponential backoff and jitter (about 1, 2, 4 … minutes, at most about an
     hour) for a temporary failure until the row's `deadline`, then `failed`; `failed` at
     once for a permanent one (`5xx`). The row's `attempts` value acts as the lease token:
     a result for a lease that ran out (another instance has the row now) is not recorded
     over the newer one's, except "sent", which is never forgotten.
- **At most one duplicate, never a lost mail.** A crash (or a database outage) between send
  and record leaves the row `queued` with a lease that expires; it is then sent again. The
  drain stops a batch as soon as a record fails, and hands back unsent mail before its lease
  could run out, so no other mail of the batch is sent twice.
  Leases and results are committed with `db.write(durable=False)` (no fsync: they survive
  any process crash, but a power failure or OS crash may forget the last second or so of
  them): such mails are sent once more, none is lost.
- **Per recipient.** When the relay accepts some recipients and refuses others, the row is
  split: it keeps the recipients that share the first outcome (sent, else temporary, else
  permanent), and a new row (same Message-ID and bytes) is made for each other outcome, so
  a retry only goes to the recipients who did not get the mail.
- **No automatic mail to dead addresses.** At lease time an acknowledgment, notice,
  rejection or FAQ answer whose every recipient is dead (`gateway/bouncing.py`) becomes
  `suppressed`, with the reason in `last_error`; `requeue_failed` takes it back.
- **Staff are told.** When a row becomes `failed`, `on_failed(session, mail, error)` runs in
  the recording transaction (under a savepoint: if it raises, the failure is still recorded
  and the error logged). It is never called for a `delivery-failed` mail (no loops).
"""

from __future__ import annotations

import email.policy
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.parser import BytesHeaderParser
from typing import TYPE_CHECKING, Any, Protocol, cast

from sqlalchemy import CursorResult, insert, select, update
from sqlmodel import Session

from gateway import bouncing
from gateway.outbound.mail import OutgoingMail
from gateway.outbound.transport import DeliveryResult, Outcome, Transport
from gateway.store.claims import claim_due
from gateway.store.db import Database
from gateway.store.models import OutboundMail, table_of, utcnow
from gateway.tickets import remember_message_id, storable

if TYPE_CHECKING:   # app.py may come to build the outbox's parts: no import cycle
    from gateway.app import App

log = logging.getLogger(__name__)

_outbound = table_of(OutboundMail)
_INSERT = insert(_outbound).returning(_outbound.c.id)

DEFAULT_DEADLINE = timedelta(days=5)    # RFC 5321 §4.5.4.1: give up after 4-5 days
LEASE = timedelta(minutes=10)           # how long other instances leave a leased mail alone
SEND_BUDGET = LEASE / 2                 # stop sending a batch this long after leasing it
BATCH = 20
FIRST_RETRY = timedelta(minutes=1)
MAX_RETRY = timedelta(hours=1)
NO_NOTICE_EVENT = "delivery-failed"     # its own failure must not cause another one


@dataclass(frozen=True)
class QueuedMail:
    """One outbound row as the drain sees it (after leasing: `attempts` includes this one)."""

    id: int
    event: str
    envelope_from: str
    recipients: tuple[str, ...]
    message_id: str
    raw: bytes
    ticket_id: int | None
    attempts: int
    created: datetime
    deadline: datetime
    last_error: str | None = None

    @property
    def subject(self) -> str:
        """The decoded Subject header (for telling the staff which mail failed)."""
        headers = BytesHeaderParser(policy=email.policy.default).parsebytes(self.raw)
        return " ".join(str(headers.get("Subject", "")).split())


@dataclass(frozen=True)
class Delivery:
    """What one drained row became: `sent`, `queued` (retry at `next_attempt`) or `failed`;
    or `unrecorded` when another instance had taken the row over."""

    mail_id: int
    message_id: str
    recipients: tuple[str, ...]
    status: str
    detail: str
    next_attempt: datetime | None = None


FailedHook = Callable[[Session, QueuedMail, str], None]


class Flag(Protocol):
    """`threading.Event` or `multiprocessing.Event`."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...

    def clear(self) -> None: ...


# -- enqueue ----------------------------------------------------------------------------------

def enqueue(session: Session, mail: OutgoingMail, *, deadline: timedelta = DEFAULT_DEADLINE,
            now: datetime | None = None) -> int:
    """Store `mail` for sending in the caller's transaction; returns the outbox id. Its
    Message-ID is remembered for its ticket, so replies to it thread."""
    if deadline <= timedelta(0):
        raise ValueError("the deadline must be in the future")
    now = now or utcnow()
    mail_id: int = session.execute(_INSERT, {
        "created": now, "ticket_id": mail.ticket_id, "event": mail.event,
        "envelope_from": mail.envelope_from, "recipients": list(mail.recipients),
        "message_id": mail.message_id, "raw": mail.raw, "status": "queued", "attempts": 0,
        "last_error": None, "next_attempt": now, "deadline": now + deadline, "sent": None,
    }).scalar_one()
    if mail.ticket_id is not None:
        remember_message_id(session, mail.ticket_id, mail.message_id)
    return mail_id


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
                                deadline=now + deadline, sent=None))
    return ids


# -- lease ------------------------------------------------------------------------------------

def lease_due(db: Database, *, limit: int = BATCH, mail_ids: Sequence[int] | None = None,
              on_failed: FailedHook | None = None,
              now: datetime | None = None) -> list[QueuedMail]:
    """Claim up to `limit` due queued mails (or these queued ids, due or not) for this
    instance. Mails that were tried before and are a lease past their deadline (e.g. every
    attempt crashed) are marked failed instead of being sent once more."""
    now = now or utcnow()
    leased: list[QueuedMail] = []
    with db.write(durable=False) as session:
        if mail_ids is None:
            rows: Sequence[Any] = claim_due(session, _outbound, status="queued", now=now,
                                            limit=limit)
        else:
            rows = session.execute(
                select(_outbound).where(_outbound.c.id.in_(list(mail_ids)),
                                        _outbound.c.status == "queued")
                .order_by(_outbound.c.id).with_for_update(skip_locked=True)).all()
        for row in rows:
            mail = _queued(row)
            if mail.attempts > 0 and now >= mail.deadline + LEASE:
                error = (f"not delivered by the deadline {mail.deadline:%Y-%m-%d %H:%M} UTC; "
                         f"last error: {mail.last_error or 'the last attempt did not finish'}")
                _fail(session, mail, error, on_failed, now)
                continue
            leased.append(replace(mail, attempts=mail.attempts + 1))
        leased = _hold_back_dead(session, leased, now)
        if leased:
            session.execute(update(_outbound)
                            .where(_outbound.c.id.in_([m.id for m in leased]))
                            .values(attempts=_outbound.c.attempts + 1,
                                    next_attempt=now + LEASE))
    return leased


def _hold_back_dead(session: Session, mails: list[QueuedMail],
                    now: datetime) -> list[QueuedMail]:
    """Mark automatic mails to dead addresses `suppressed` (see `gateway/bouncing.py`);
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
            status="suppressed", next_attempt=now, last_error=storable(note)[:4000]))
        log.info("outbox %d %s: suppressed (%s)", mail.id, mail.message_id, note)
    return to_send


def release(db: Database, mails: Sequence[QueuedMail]) -> None:
    """Hand leased mails back unsent: due again now, the attempt not counted."""
    if not mails:
        return
    try:
        with db.write(durable=False) as session:
            for mail in mails:
                _update_leased(session, mail, attempts=mail.attempts - 1, next_attempt=utcnow())
    except Exception:
        log.exception("outbox: could not hand back %d leased mails; their lease expires",
                      len(mails))


def _queued(row: Any) -> QueuedMail:
    return QueuedMail(
        id=row.id, event=row.event, envelope_from=row.envelope_from,
        recipients=tuple(row.recipients), message_id=row.message_id, raw=row.raw,
        ticket_id=row.ticket_id, attempts=row.attempts, created=row.created,
        deadline=row.deadline or row.created + DEFAULT_DEADLINE, last_error=row.last_error)


# -- record -----------------------------------------------------------------------------------

def record_result(db: Database, mail: QueuedMail, result: DeliveryResult, *,
                  on_failed: FailedHook | None = None,
                  now: datetime | None = None) -> list[Delivery]:
    """Record what the transport did with a leased mail, in one transaction; returns one
    `Delivery` per row (more than one when the recipients had different outcomes)."""
    now = now or utcnow()
    groups = list(_by_outcome(mail.recipients, result).items())
    with db.write(durable=False) as session:
        if len(groups) == 1:    # the usual case: one guarded UPDATE
            [(outcome, (_, detail))] = groups
            done = _apply(session, mail, outcome, detail, None, on_failed, now)
            deliveries = [done] if done else _lease_lost(session, mail, result, now)
        else:
            deliveries = _record_split(session, mail, groups, on_failed, now)
            if not deliveries:
                deliveries = _lease_lost(session, mail, result, now)
    for delivery in deliveries:
        log.info("outbox %d %s: %s to %s (%s)", delivery.mail_id, delivery.message_id,
                 delivery.status, ", ".join(delivery.recipients), delivery.detail)
    return deliveries


def _lease_lost(session: Session, mail: QueuedMail, result: DeliveryResult,
                now: datetime) -> list[Delivery]:
    """Our lease ran out and another instance has the row now (or has finished it). A mail
    we sent is recorded as sent all the same; any other result is the newer lease's to tell."""
    status = session.execute(select(_outbound.c.status)
                             .where(_outbound.c.id == mail.id)).scalar_one_or_none()
    if status == "queued" and result.outcome == "sent" and not result.refused:
        session.execute(update(_outbound).where(_outbound.c.id == mail.id)
                        .values(status="sent", sent=now, last_error=None))
        return [Delivery(mail.id, mail.message_id, mail.recipients, "sent", result.text)]
    log.warning("outbox %d %s: lease ran out before the result (%s: %s) was recorded; "
                "the row is %s now", mail.id, mail.message_id, result.outcome,
                result.describe(), status or "gone")
    return [Delivery(mail.id, mail.message_id, mail.recipients, "unrecorded",
                     result.describe())]


def _record_split(session: Session, mail: QueuedMail,
                  groups: list[tuple[Outcome, tuple[tuple[str, ...], str]]],
                  on_failed: FailedHook | None, now: datetime) -> list[Delivery]:
    """The row keeps the first group's recipients, a copy is made for each other group;
    [] when the lease was lost."""
    current = session.execute(select(_outbound).where(
        _outbound.c.id == mail.id, _outbound.c.status == "queued",
        _outbound.c.attempts == mail.attempts).with_for_update()).one_or_none()
    if current is None:
        return []
    rows = [replace(mail, recipients=groups[0][1][0])]
    for _, (recipients, _detail) in groups[1:]:
        values = {c.name: getattr(current, c.name) for c in _outbound.columns if c.name != "id"}
        copy_id = session.execute(_INSERT, {**values, "recipients": list(recipients)})
        rows.append(replace(mail, recipients=recipients, id=int(copy_id.scalar_one())))
    session.execute(update(_outbound).where(_outbound.c.id == mail.id)
                    .values(recipients=list(rows[0].recipients)))
    note = "other recipients: " + ", ".join(
        f"outbox {row.id} ({outcome})" for row, (outcome, _) in zip(rows[1:], groups[1:],
                                                                     strict=True))
    deliveries = []
    for row, (outcome, (_, detail)) in zip(rows, groups, strict=True):
        done = _apply(session, row, outcome, detail,
                      note if row.id == mail.id else f"split from outbox {mail.id}",
                      on_failed, now)
        assert done is not None   # the rows are locked (or new) in this transaction
        deliveries.append(done)
    return deliveries


def _by_outcome(recipients: tuple[str, ...], result: DeliveryResult
                ) -> dict[Outcome, tuple[tuple[str, ...], str]]:
    """{outcome: (recipients, detail)} in the order sent, temporary, permanent."""
    groups: dict[Outcome, tuple[tuple[str, ...], str]] = {}
    refused = {r.recipient: r for r in result.refused}
    for outcome in ("sent", "temporary", "permanent"):
        members = tuple(r for r in recipients if result.outcome_for(r) == outcome)
        if not members:
            continue
        texts = [result.text] if any(r not in refused for r in members) else []
        refusals = [refused[r].describe() for r in members if r in refused]
        if refusals:
            texts.append("refused " + "; ".join(refusals))
        groups[outcome] = (members, storable("; ".join(texts).strip())[:4000])
    return groups


def _update_leased(session: Session, mail: QueuedMail, **values: Any) -> bool:
    """Update the row only while it is still under the lease `mail` came with."""
    result = session.execute(update(_outbound).where(
        _outbound.c.id == mail.id, _outbound.c.status == "queued",
        _outbound.c.attempts == mail.attempts).values(**values))
    return cast("CursorResult[Any]", result).rowcount == 1


def _apply(session: Session, mail: QueuedMail, outcome: Outcome, detail: str,
           note: str | None, on_failed: FailedHook | None, now: datetime) -> Delivery | None:
    """Record one outcome for the row; None when the row is no longer under our lease."""
    def delivery(status: str, text: str, next_attempt: datetime | None = None) -> Delivery:
        return Delivery(mail.id, mail.message_id, mail.recipients, status, text, next_attempt)

    if outcome == "sent":
        changed = _update_leased(session, mail, status="sent", sent=now, last_error=note)
        return delivery("sent", detail) if changed else None
    if outcome == "temporary" and now < mail.deadline:
        next_attempt = min(now + backoff(mail.attempts), mail.deadline)
        changed = _update_leased(session, mail, next_attempt=next_attempt,
                                 last_error=f"{detail} ({note})" if note else detail)
        return delivery("queued", detail, next_attempt) if changed else None
    if outcome == "temporary":
        detail = (f"not delivered by the deadline {mail.deadline:%Y-%m-%d %H:%M} UTC; "
                  f"last error: {detail}")
    failed = _fail(session, mail, f"{detail} ({note})" if note else detail, on_failed, now)
    return delivery("failed", detail) if failed else None


def _fail(session: Session, mail: QueuedMail, error: str, on_failed: FailedHook | None,
          now: datetime) -> bool:
    """Mark the row failed (if still under the lease `mail` came with) and tell the staff."""
    error = storable(error)[:4000]
    if not _update_leased(session, mail, status="failed", next_attempt=now, last_error=error):
        return False
    log.error("outbox %d %s: failed: %s", mail.id, mail.message_id, error)
    if on_failed is None or mail.event == NO_NOTICE_EVENT:
        return True
    try:
        with session.begin_nested():
            on_failed(session, replace(mail, last_error=error), error)
    except Exception:
        log.exception("outbox %d %s: telling the staff about the failure failed", mail.id,
                      mail.message_id)
    return True


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th attempt failed for now: 1, 2, 4 … minutes, capped
    at an hour, each ±20% so mails that failed together do not retry together."""
    base = min(FIRST_RETRY * 2 ** min(max(attempts - 1, 0), 16), MAX_RETRY)
    return base * random.uniform(0.8, 1.2)


# -- drain ------------------------------------------------------------------------------------

def drain(db: Database, transport: Transport, *, limit: int = BATCH,
          on_failed: FailedHook | None = None, stop: Flag | None = None,
          mail_ids: Sequence[int] | None = None) -> list[Delivery]:
    """Lease one batch, send each mail and record each result; the deliveries (empty when
    nothing was due). Sending stops early (the rest handed back unsent) when `stop` is set,
    when the batch has taken half a lease, or when a result cannot be recorded."""
    leased = lease_due(db, limit=limit, mail_ids=mail_ids, on_failed=on_failed)
    started = time.monotonic()
    deliveries: list[Delivery] = []
    try:
        for index, mail in enumerate(leased):
            if ((stop is not None and stop.is_set())
                    or time.monotonic() - started > SEND_BUDGET.total_seconds()):
                release(db, leased[index:])
                break
            result = _send(transport, mail)
            try:
                deliveries += record_result(db, mail, result, on_failed=on_failed)
            except Exception:
                # sent (or not) but not recorded: after the lease it is sent again. Stop
                # here so that no further mail of the batch risks the same.
                log.exception("outbox %d %s: could not record the result (%s); it will be "
                              "retried when the lease ends", mail.id, mail.message_id,
                              result.outcome)
                release(db, leased[index + 1:])
                break
    finally:
        transport.close()
    return deliveries


def _send(transport: Transport, mail: QueuedMail) -> DeliveryResult:
    try:
        return transport.send(mail.envelope_from, mail.recipients, mail.raw)
    except Exception as exc:   # a transport bug: keep the mail, retry it later
        log.exception("outbox %d %s: the transport failed", mail.id, mail.message_id)
        return DeliveryResult("temporary", None, f"transport error: {exc!r}"[:1000])


def run_outbox(app: App, stop: Flag, transport: Transport, wake: Flag | None = None,
               idle_poll: float = 1.0, *, on_failed: FailedHook | None = None,
               limit: int = BATCH) -> None:
    """Drain the outbox until `stop` is set; sleeps `idle_poll` seconds (or until `wake`)
    when nothing is due. A database outage is waited out, not fatal. Set `wake` after
    `stop` for a prompt exit."""
    log.info("outbox started (%r)", transport)
    while not stop.is_set():
        try:
            done = drain(app.db, transport, limit=limit, on_failed=on_failed, stop=stop)
        except Exception:
            log.exception("outbox: could not lease mail; retrying")
            done = []
        if not done:
            if wake is not None:
                wake.wait(idle_poll)
                wake.clear()
            else:
                stop.wait(idle_poll)
    log.info("outbox stopped")
