"""Mail about one ticket to one recipient goes out in the order it was queued.

In: the caller's session (the lease transaction of `outbox.lease_due`) and the mails it just
claimed. Out: the mails that may be sent now; the others stay `queued` and untouched (not
leased, their attempts not counted), so a later drain takes them again.

Guarantee: a mail of a ticket is not sent while an earlier one (a lower outbox id) of the
same ticket to one of the same recipients (compared as `address_key`, case-insensitive) is
still `queued`, whether it waits for a retry, is leased by this or another instance, or was
claimed in this same batch. So after a temporary failure the customer never gets "pending"
before "open", nor a staff answer before the one it follows. An earlier mail that is sent,
`failed` or `suppressed` no longer holds anything back. The price: a mail waits as long as
the one before it retries (at most until that one's deadline).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlmodel import Session

from gateway.mail.addresses import address_key
from gateway.outbound.outbox_record import QueuedMail
from gateway.store.models import OutboundMail, table_of

_outbound = table_of(OutboundMail)


def in_queue_order(session: Session, mails: Sequence[QueuedMail]) -> list[QueuedMail]:
    """`mails` without those an earlier queued mail of the same ticket and recipient must
    precede (one query for all of them)."""
    ticket_ids = sorted({m.ticket_id for m in mails if m.ticket_id is not None})
    if not ticket_ids:
        return list(mails)
    earlier = session.execute(
        select(_outbound.c.id, _outbound.c.ticket_id, _outbound.c.recipients)
        .where(_outbound.c.status == "queued", _outbound.c.ticket_id.in_(ticket_ids),
               _outbound.c.id < max(m.id for m in mails))).all()
    waiting: dict[int, list[tuple[int, set[str]]]] = {}
    for row in earlier:
        waiting.setdefault(row.ticket_id, []).append((row.id, _keys(row.recipients)))
    return [mail for mail in mails if mail.ticket_id is None or not any(
        other_id < mail.id and recipients & _keys(mail.recipients)
        for other_id, recipients in waiting.get(mail.ticket_id, ()))]


def _keys(recipients: Sequence[str]) -> set[str]:
    return {address_key(r).lower() for r in recipients}
