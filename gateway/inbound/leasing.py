"""Leasing stored mail for the inbound worker (`worker.py`; `ingest` and `quarantine retry`
lease what they process themselves).

In: the database and mail ids or a limit. Out: the ids now leased by this process: `attempts`
counted (the lease token), `next_attempt` one `store/leases.LEASE` (20 s) ahead, this process
named in `lease_holder`. A due row whose previous lease ran out without a result is a
takeover: one warning each, and `on_takeover` is called (the seam for a metrics counter).
A mail whose worker died in each of `MAX_ATTEMPTS` attempts is quarantined here instead of
being leased again, with the From and Subject its header shows. Leases are committed with
`db.write(durable=False)`: a power failure may forget one, which only repeats work.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlmodel import Session

from gateway.mail.peek import HEAD_BYTES, peek_from_subject
from gateway.observe import metrics
from gateway.store.blobs import BlobStore
from gateway.store.claims import claim_due
from gateway.store.db import Database
from gateway.store.leases import LEASE, TakeoverHook, holder_id, note_takeovers
from gateway.store.models import ReceivedMail, table_of, utcnow
from gateway.tickets.ticket import storable

log = logging.getLogger("gateway.inbound.worker")     # one log source for the worker

_received = table_of(ReceivedMail)
MAX_ATTEMPTS = 3


def lease_batch(db: Database, limit: int = 20, blobs: BlobStore | None = None, *,
                on_takeover: TakeoverHook | None = None, now: datetime | None = None
                ) -> list[int]:
    """Claim up to `limit` due mails for this worker; mails that already used all their
    attempts (their worker died each time) are quarantined instead, with the From and
    Subject their header shows (read from `blobs` for a mail stored there). Takeovers of
    leases that ran out are logged and passed to `on_takeover`."""
    now = now or utcnow()
    leased: list[int] = []
    with db.write(durable=False) as session:
        rows = claim_due(session, _received, status="pending", now=now, limit=limit,
                         columns=("id", "attempts", "lease_holder", "next_attempt"))
        note_takeovers("inbound", rows, on_takeover)
        for row in rows:
            if row.attempts >= MAX_ATTEMPTS:
                shown = shown_columns(*peek_stored(session, row.id, blobs))
                session.execute(update(_received).where(_received.c.id == row.id).values(
                    status="quarantined", outcome="quarantined", processed=now,
                    lease_holder=None,
                    reason=f"processing did not finish in {row.attempts} attempts "
                           "(the worker stopped each time)", **shown))
                log.error("inbound %d: quarantined after %d unfinished attempts%s", row.id,
                          row.attempts, which_mail(shown))
                metrics.count_processed("quarantined", None, None)
                continue
            leased.append(row.id)
        if leased:      # one statement for the batch, not one per mail
            session.execute(update(_received).where(_received.c.id.in_(leased)).values(
                attempts=_received.c.attempts + 1, next_attempt=now + LEASE,
                lease_holder=holder_id()))
    return leased


def lease_ids(db: Database, mail_ids: list[int]) -> list[int]:
    """Lease these pending mails now, due or not (for `ingest` and `quarantine retry`,
    which process what they stored at once); mails whose lease another worker holds are
    left to it."""
    now = utcnow()
    leased: list[int] = []
    with db.write(durable=False) as session:
        for start in range(0, len(mail_ids), 500):
            rows = session.execute(
                select(_received.c.id, _received.c.attempts, _received.c.lease_holder,
                       _received.c.next_attempt)
                .where(_received.c.id.in_(mail_ids[start:start + 500]),
                       _received.c.status == "pending",
                       or_(_received.c.lease_holder.is_(None),
                           _received.c.next_attempt <= now))
                .with_for_update(skip_locked=True)).all()
            note_takeovers("inbound", rows)
            ids = [row.id for row in rows]
            if ids:
                session.execute(update(_received).where(_received.c.id.in_(ids)).values(
                    attempts=_received.c.attempts + 1, next_attempt=now + LEASE,
                    lease_holder=holder_id()))
            leased += ids
    return sorted(leased)


def shown_columns(from_address: str, subject: str) -> dict[str, str | None]:
    """The `received_mail` columns the operator's lists show ("" is stored as NULL)."""
    return {"from_address": storable(from_address)[:1000] or None,
            "subject": storable(subject)[:1000] or None}


def which_mail(shown: dict[str, Any]) -> str:
    """", from X, subject Y" for a log line (nothing for what is unknown)."""
    return "".join(f", {label} {str(shown[key])[:200]!r}"
                   for key, label in (("from_address", "from"), ("subject", "subject"))
                   if shown.get(key))


def peek_stored(session: Session, mail_id: int, blobs: BlobStore | None) -> tuple[str, str]:
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
