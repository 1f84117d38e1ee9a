"""Addresses our mail bounced at, and when we stop sending them automatic mail.

In: the recipients of delivery reports (`record_bounces`, from the inbound pipeline), signs
of life (`clear_on_mail_from`: a mail a person, or their out-of-office, sent from the
address). Out: which
recipients are *dead* for the outbox (`dead_recipients`), and the list and reset for
`ticketgw bounces`.

Guarantees:
- A delivery report counts only when it is verifiably about a mail we sent to the address:
  one of the Message-IDs of the mail it returns is one of our outbound mails (64 random
  bits, `headers.new_message_id`: nobody who did not receive that mail can know it) and the
  address was among that mail's recipients. Anyone can send a null-sender "bounce"; a
  forged one, or one about a mail we never sent, marks nothing (the outcome says so).
- An address is dead when a delivery report failed it hard because it does not exist or
  is disabled (RFC 3463 5.1.x, 5.2.1), or when it bounced hard at least `HARD_BOUNCES_DEAD`
  times for any other permanent reason except a full mailbox (5.2.2) or a mail too big
  (5.3.4), which say nothing about the address. Delayed and 4.x.x reports never count.
- Only automatic mail (`SUPPRESSED_EVENTS`: acknowledgments, status and follow-up notices,
  rejections, FAQ answers to customers; the staff digest) is held back from a dead address,
  and only
  when every recipient is dead; what a person wrote or asked for right now (staff answers,
  password and file-exchange links) is always sent.
- The mark ends when the address sends us a mail that is not itself automatic, or an admin
  runs `ticketgw bounces clear ADDRESS`. The worker asks once per transaction which of its
  mails' senders have a record (`look_up_senders`, one SELECT for the batch) and deletes
  only those, instead of a DELETE per mail; the answer lives in that transaction's session
  only (no cache across transactions or processes), and an address this transaction
  records later is deleted as before. A record another instance commits while this
  transaction runs is treated as if it came after this mail (either order is possible for
  concurrent transactions; with a DELETE per mail the same holds for a record committed
  just after it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam, delete, select
from sqlmodel import Session

from gateway.mail.addresses import address_key
from gateway.store.models import BouncingAddress, OutboundMail, table_of, utcnow
from gateway.store.upsert import upsert_for

_bouncing = table_of(BouncingAddress)
_outbound = table_of(OutboundMail)

SUPPRESSED_EVENTS = frozenset({"ack", "follow-up", "status", "reject", "faq-answer",
                               "staff-digest",
                               "guide-complete",
                               "sla-reminder", "sla-escalation", "pending-reminder",
                               "pending-closed"})
HARD_BOUNCES_DEAD = 2
_NOT_ABOUT_THE_ADDRESS = frozenset({"5.2.2", "5.3.4"})   # mailbox full, mail too big
_SENDERS = "tgw_bouncing_senders"     # the `Session.info` key of `look_up_senders`
_CLEAR = delete(_bouncing).where(_bouncing.c.address_key == bindparam("key"))   # built once


@dataclass
class _Senders:
    """What one transaction knows about its senders' bounce records: the address keys
    looked up, and those of them (or recorded since) that may have a record."""

    looked_up: set[str]
    with_record: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class DeadAddress:
    address: str
    status: str
    count: int
    last_bounce: datetime
    reason: str

    def explanation(self) -> str:
        return (f"{self.address} bounced ({self.status or 'permanent failure'}, "
                f"{self.count}x, last {self.last_bounce:%Y-%m-%d %H:%M} UTC)")


def is_dead(status: str, permanent: bool, count: int) -> bool:
    """The rule of the module's docstring for one `bouncing_address` row."""
    if not permanent:
        return False
    if status.startswith("5.1.") or status == "5.2.1":
        return True
    return count >= HARD_BOUNCES_DEAD and status not in _NOT_ABOUT_THE_ADDRESS


def record_bounces(session: Session, bounced: Sequence[tuple[str, str, bool]],
                   original_message_ids: Sequence[str], reason: str,
                   ticket_id: int | None) -> str:
    """Note each (address, RFC 3463 status, permanent) of a delivery report that is about a
    mail we sent to that address (the module's docstring); a repeated address counts up and
    takes the latest status. Returns what was not noted and why, for the outcome's reason
    ("" when every address was noted)."""
    now = utcnow()
    sent_to = _recipients_of(session, original_message_ids)
    unverified: list[str] = []
    for reported, status, permanent in bounced:
        if not reported:
            continue
        address = sent_to.get(address_key(reported).lower())
        if address is None:
            unverified.append(reported)
            continue
        values = {"address_key": address_key(address), "status": status,
                  "permanent": permanent, "reason": reason[:1000], "count": 1,
                  "first_bounce": now, "last_bounce": now, "last_ticket_id": ticket_id}
        session.execute(upsert_for(session)(_bouncing).values(**values).on_conflict_do_update(
            index_elements=["address_key"],
            set_={"status": status, "permanent": permanent, "reason": reason[:1000],
                  "count": _bouncing.c.count + 1, "last_bounce": now,
                  "last_ticket_id": ticket_id}))
        senders = session.info.get(_SENDERS)
        if senders is not None:           # a later mail of this transaction clears it
            senders.with_record.add(address_key(address))
    if not unverified:
        return ""
    why = ("it returns no mail of ours" if not sent_to else
           "the mail of ours it returns was not sent to " +
           ("it" if len(unverified) == 1 else "them"))
    return f"not marked as bouncing: {', '.join(unverified)} ({why})"


def _recipients_of(session: Session, message_ids: Sequence[str]) -> dict[str, str]:
    """The recipients of our outbound mails with these Message-IDs, by lower-cased address
    (a reporting MTA may change the case of what we sent)."""
    wanted = [m for m in dict.fromkeys(message_ids) if m][:100]
    if not wanted:
        return {}
    rows = session.execute(select(_outbound.c.recipients)
                           .where(_outbound.c.message_id.in_(wanted))).scalars()
    return {address_key(r).lower(): r for recipients in rows for r in recipients}


def look_up_senders(session: Session, addresses: Iterable[str]) -> None:
    """Before a batch of mails is applied in this transaction: which of their senders have a
    bounce record, in one SELECT, so that `clear_on_mail_from` deletes only those (the
    module's docstring). Without it, each clear is a DELETE of its own."""
    keys = sorted({address_key(a) for a in addresses if a})
    if not keys:
        return
    found = session.execute(select(_bouncing.c.address_key)
                            .where(_bouncing.c.address_key.in_(keys))).scalars()
    session.info[_SENDERS] = _Senders(set(keys), set(found))


def clear_on_mail_from(session: Session, address: str) -> None:
    """Mail came from the address (a person, or its out-of-office reply; not a bounce or a
    list): the mailbox exists, it works again. No statement when `look_up_senders` found
    no record for it in this transaction and none was recorded since."""
    if not address:
        return
    key = address_key(address)
    senders = session.info.get(_SENDERS)
    if senders is not None and key in senders.looked_up and key not in senders.with_record:
        return
    session.execute(_CLEAR, {"key": key})   # a record stays known: a savepoint may undo this


def clear(session: Session, address: str) -> bool:
    """Forget the address's bounces (`ticketgw bounces clear`); False when none were known."""
    result = session.execute(_CLEAR, {"key": address_key(address)})
    return bool(getattr(result, "rowcount", 0))


def dead_recipients(session: Session, recipients: Iterable[str]) -> dict[str, DeadAddress]:
    """The dead ones among these addresses, by `address_key`."""
    keys = sorted({address_key(r) for r in recipients})
    if not keys:
        return {}
    rows = session.execute(select(_bouncing).where(_bouncing.c.address_key.in_(keys))).mappings()
    return {row["address_key"]: DeadAddress(row["address_key"], row["status"], row["count"],
                                            row["last_bounce"], row["reason"])
            for row in rows if is_dead(row["status"], row["permanent"], row["count"])}


def dead_address(session: Session, address: str) -> DeadAddress | None:
    """The address's bounce record if it is dead (for `ticket show` and `explain`)."""
    return dead_recipients(session, [address]).get(address_key(address)) if address else None


def held_back(event: str, recipients: Sequence[str],
              dead: dict[str, DeadAddress]) -> list[DeadAddress] | None:
    """The dead addresses that hold this mail back, or None when it is to be sent."""
    if event not in SUPPRESSED_EVENTS or not recipients:
        return None
    found = [dead.get(address_key(r)) for r in recipients]
    if any(d is None for d in found):
        return None
    return [d for d in found if d is not None]


def listing(session: Session, *, dead_only: bool) -> list[dict[str, object]]:
    """Every recorded address (or only the dead ones), most recent bounce first."""
    rows = session.execute(select(_bouncing).order_by(_bouncing.c.last_bounce.desc()))
    listed = []
    for row in rows.mappings():
        dead = is_dead(row["status"], row["permanent"], row["count"])
        if dead or not dead_only:
            listed.append({"address": row["address_key"], "status": row["status"],
                           "permanent": row["permanent"], "count": row["count"], "dead": dead,
                           "first_bounce": row["first_bounce"].isoformat(),
                           "last_bounce": row["last_bounce"].isoformat(),
                           "reason": row["reason"]})
    return listed
