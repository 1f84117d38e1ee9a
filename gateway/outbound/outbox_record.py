"""Recording what the transport did with leased outbound mails (see `outbox.py` for the
guarantees): `sent`, back to `queued` with backoff, or `failed` (and the staff told);
a row split per recipient outcome; nothing recorded over a newer lease.

`record_results` records a batch in one write transaction: the usual case, every mail sent
to every recipient, is a single UPDATE guarded by the (id, attempts) pairs (autocommitted on
PostgreSQL); splits, retries and failures join the same transaction. Only when a lease was
lost under an all-sent batch does a second short transaction look at those rows.
"""

from __future__ import annotations

import email.policy
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.parser import BytesHeaderParser
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, bindparam, insert, select, tuple_, update
from sqlmodel import Session

from gateway.observe import metrics
from gateway.outbound import recipe
from gateway.outbound.transport import DeliveryResult, Outcome
from gateway.store.db import Database
from gateway.store.models import OutboundMail, table_of, utcnow
from gateway.tickets.ticket import storable

log = logging.getLogger("gateway.outbound.outbox")   # one log source for the outbox

_outbound = table_of(OutboundMail)
# `update_leased(…, status="sent", sent=…, last_error=None)` for a whole batch, built once:
# the usual result; the ids it returns are the rows that were still under our lease
_MARK_SENT = update(_outbound).where(
    _outbound.c.status == "queued",
    tuple_(_outbound.c.id, _outbound.c.attempts).in_(bindparam("leases", expanding=True))
).values(status="sent", sent=bindparam("sent"), last_error=None,
         lease_holder=None).returning(_outbound.c.id)
_INSERT = insert(_outbound).returning(_outbound.c.id)

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
    raw: bytes | None           # None until the outbox has rendered the recipe
    ticket_id: int | None
    attempts: int
    created: datetime
    deadline: datetime
    last_error: str | None = None
    recipe: str | None = None

    @property
    def subject(self) -> str:
        """The decoded Subject header (for telling the staff which mail failed); from the
        recipe when the mail was never rendered."""
        if self.raw is None:
            try:
                return recipe.decode(self.recipe or "").subject
            except ValueError:
                return ""
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


# -- record -----------------------------------------------------------------------------------

def record_result(db: Database, mail: QueuedMail, result: DeliveryResult, *,
                  on_failed: FailedHook | None = None,
                  now: datetime | None = None) -> list[Delivery]:
    """Record what the transport did with one leased mail (`record_results` of one)."""
    return record_results(db, [(mail, result)], on_failed=on_failed, now=now)


def record_results(db: Database, results: Sequence[tuple[QueuedMail, DeliveryResult]], *,
                   on_failed: FailedHook | None = None,
                   now: datetime | None = None) -> list[Delivery]:
    """Record what the transport did with leased mails, in one transaction; returns the
    `Delivery`s in the order of `results`, one per row (more than one for a mail whose
    recipients had different outcomes). Raises (nothing recorded) when the database
    fails; the mails are then left to their leases."""
    now = now or utcnow()
    if not results:
        return []
    plans = [(mail, result, list(_by_outcome(mail.recipients, result).items()))
             for mail, result in results]
    all_sent = [mail for mail, _, groups in plans if [o for o, _ in groups] == ["sent"]]
    done: dict[int, list[Delivery]] = {}
    if len(all_sent) == len(plans):    # the usual case: one guarded UPDATE, autocommitted
        with db.one_statement() as connection:
            marked = _mark_sent(connection, all_sent, now)
        done = {mail.id: [_sent(mail, groups)] for mail, _, groups in plans
                if mail.id in marked}
        if len(done) < len(plans):     # a lease was lost: rare, looked at in a transaction
            with db.write(durable=False, patient=True) as session:
                for mail, result, _ in plans:
                    if mail.id not in done:
                        done[mail.id] = _lease_lost(session, mail, result, now)
    else:
        with db.write(durable=False, patient=True) as session:
            marked = _mark_sent(session, all_sent, now)
            for mail, result, groups in plans:
                if mail.id in marked:
                    done[mail.id] = [_sent(mail, groups)]
                elif len(groups) == 1 and groups[0][0] != "sent":   # one guarded UPDATE
                    [(outcome, (_, detail))] = groups
                    applied = _apply(session, mail, outcome, detail, None, on_failed, now)
                    done[mail.id] = ([applied] if applied
                                     else _lease_lost(session, mail, result, now))
                elif len(groups) > 1:
                    done[mail.id] = (_record_split(session, mail, groups, on_failed, now)
                                     or _lease_lost(session, mail, result, now))
                else:                   # sent, but the lease was lost
                    done[mail.id] = _lease_lost(session, mail, result, now)
    for mail, _, _ in plans:
        for delivery in done[mail.id]:
            # sent: routine; queued again: the relay's 4xx or no connection, expected now
            # and then (one line, no traceback); failed was logged by `fail_leased`
            log.log(_LEVELS.get(delivery.status, logging.INFO), "outbox %d %s: %s to %s (%s)",
                    delivery.mail_id, delivery.message_id, delivery.status,
                    ", ".join(delivery.recipients), delivery.detail)
            if delivery.status in ("sent", "queued"):
                metrics.count_outbound("sent" if delivery.status == "sent" else "deferred",
                                       metrics.seconds_between(mail.created, now))
    return [delivery for mail, _, _ in plans for delivery in done[mail.id]]


_LEVELS = {"sent": logging.DEBUG, "queued": logging.WARNING}


def _mark_sent(connection: Session | Connection, mails: list[QueuedMail],
               now: datetime) -> set[int]:
    """Mark these mails sent to every recipient while they are under our lease, in one
    statement; the ids marked (a missing one has lost its lease)."""
    if not mails:
        return set()
    marked = connection.execute(_MARK_SENT, {"leases": [(m.id, m.attempts) for m in mails],
                                             "sent": now})
    return set(marked.scalars())


def _sent(mail: QueuedMail, groups: list[tuple[Outcome, tuple[tuple[str, ...], str]]]
          ) -> Delivery:
    [(_, (_, detail))] = groups
    return Delivery(mail.id, mail.message_id, mail.recipients, "sent", detail)


def _lease_lost(session: Session, mail: QueuedMail, result: DeliveryResult,
                now: datetime) -> list[Delivery]:
    """Our lease ran out and another instance has the row now (or has finished it). A mail
    we sent is recorded as sent all the same; any other result is the newer lease's to tell."""
    status = session.execute(select(_outbound.c.status)
                             .where(_outbound.c.id == mail.id)).scalar_one_or_none()
    if status == "queued" and result.outcome == "sent" and not result.refused:
        session.execute(update(_outbound).where(_outbound.c.id == mail.id)
                        .values(status="sent", sent=now, last_error=None, lease_holder=None))
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


def update_leased(session: Session | Connection, mail: QueuedMail, **values: Any) -> bool:
    """Update the row only while it is still under the lease `mail` came with; the update
    ends the lease (every caller records a result or hands the mail back)."""
    result = session.execute(update(_outbound).where(
        _outbound.c.id == mail.id, _outbound.c.status == "queued",
        _outbound.c.attempts == mail.attempts).values(lease_holder=None, **values))
    return cast("CursorResult[Any]", result).rowcount == 1


def _apply(session: Session, mail: QueuedMail, outcome: Outcome, detail: str,
           note: str | None, on_failed: FailedHook | None, now: datetime) -> Delivery | None:
    """Record one outcome for the row; None when the row is no longer under our lease."""
    def delivery(status: str, text: str, next_attempt: datetime | None = None) -> Delivery:
        return Delivery(mail.id, mail.message_id, mail.recipients, status, text, next_attempt)

    if outcome == "sent":
        changed = update_leased(session, mail, status="sent", sent=now, last_error=note)
        return delivery("sent", detail) if changed else None
    if outcome == "temporary" and now < mail.deadline:
        next_attempt = min(now + backoff(mail.attempts), mail.deadline)
        changed = update_leased(session, mail, next_attempt=next_attempt,
                                 last_error=f"{detail} ({note})" if note else detail)
        return delivery("queued", detail, next_attempt) if changed else None
    if outcome == "temporary":
        detail = (f"not delivered by the deadline {mail.deadline:%Y-%m-%d %H:%M} UTC; "
                  f"last error: {detail}")
    failed = fail_leased(session, mail, f"{detail} ({note})" if note else detail, on_failed, now)
    return delivery("failed", detail) if failed else None


def fail_leased(session: Session, mail: QueuedMail, error: str, on_failed: FailedHook | None,
          now: datetime) -> bool:
    """Mark the row failed (if still under the lease `mail` came with) and tell the staff."""
    error = storable(error)[:4000]
    if not update_leased(session, mail, status="failed", next_attempt=now, last_error=error):
        return False
    log.error("outbox %d %s: failed: %s", mail.id, mail.message_id, error)
    metrics.count_outbound("failed")
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
